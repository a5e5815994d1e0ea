//! Every connection's watchdog, against clients that hold connections open by sending
//! slowly. Between two answers, a connection may keep flexhook waiting for its client at
//! most its *patience* (`server.keep_alive_secs` + `server.client_request_timeout_ms` +
//! `server.client_disconnect_timeout_ms`); then it is shut down.
//!
//! actix's own timers leave gaps this closes: it times the head of a connection's first
//! request only, so a later request's head on a kept-alive connection could trickle in for
//! ever; and after an early answer (a 408 or 413) it reads a chunked body's rest to its end,
//! untimed. Time spent in a handler (reading a webhook's body included, which
//! `server.client_body_timeout_ms` bounds) never counts.

use std::any::Any;
use std::cell::Cell;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::rt::net::TcpStream;
use actix_web::Error;
use tokio::sync::oneshot;
use tokio::time::{sleep_until, Instant};

/// What the watchdog watches: requests in a handler now, and when the last one left it.
struct Activity {
    in_flight: Cell<u32>,
    last_answer: Cell<Instant>,
}

/// Kept in the connection's data, so dropped with the connection: which stops its watchdog.
struct Watched {
    activity: Rc<Activity>,
    _stop: oneshot::Sender<()>,
}

/// For `HttpServer::on_connect`: starts each new connection's watchdog.
pub fn watch_connections(
    patience: Duration,
) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |connection, data| {
        let Some(stream) = connection.downcast_ref::<TcpStream>() else {
            return;
        };
        // A second handle on the socket, to shut it down from the watchdog.
        let socket = match stream.as_fd().try_clone_to_owned() {
            Ok(fd) => std::net::TcpStream::from(fd),
            Err(e) => {
                tracing::warn!(error = %e, "connection not watched: cannot duplicate its socket");
                return;
            }
        };
        let activity = Rc::new(Activity {
            in_flight: Cell::new(0),
            last_answer: Cell::new(Instant::now()),
        });
        let (stop, stopped) = oneshot::channel();
        actix_web::rt::spawn(watch(socket, activity.clone(), patience, stopped));
        data.insert(Watched {
            activity,
            _stop: stop,
        });
    }
}

async fn watch(
    socket: std::net::TcpStream,
    activity: Rc<Activity>,
    patience: Duration,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut check_at = Instant::now() + patience;
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            () = sleep_until(check_at) => {}
        }
        let now = Instant::now();
        let due = if activity.in_flight.get() > 0 {
            now + patience
        } else {
            activity.last_answer.get() + patience
        };
        if due > now {
            check_at = due;
            continue;
        }
        tracing::debug!(
            patience_ms = patience.as_millis(),
            "connection shut down: its client kept it waiting"
        );
        let _ = socket.shutdown(Shutdown::Both);
        return;
    }
}

/// App-wide middleware: tells the connection's watchdog that a request is in a handler,
/// and when it left it (however it left: answered, refused, or dropped).
pub async fn track_answers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let _in_flight = req
        .conn_data::<Watched>()
        .map(|watched| InFlight::start(watched.activity.clone()));
    next.call(req).await
}

struct InFlight(Rc<Activity>);

impl InFlight {
    fn start(activity: Rc<Activity>) -> Self {
        activity.in_flight.set(activity.in_flight.get() + 1);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .set(self.0.in_flight.get().saturating_sub(1));
        self.0.last_answer.set(Instant::now());
    }
}
