//! Hostile HTTP, black-box: compressed, chunked, malformed, huge, ambiguous and slow
//! requests each get their one answer, never a 500, and leave nothing stored and nothing
//! sent to Twilio. Where reqwest cannot say it, a raw TCP client does.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Stops the app, so that its worker is done with anything it started, then checks that
/// the store holds no job and that no Twilio stand-in received a request.
async fn assert_nothing_stored_or_sent(app: TestApp, env: &Env) {
    app.stop().await;
    let jobs = env.store().await.all_jobs().await.unwrap();
    assert!(jobs.is_empty(), "nothing may be stored: {jobs:?}");
    for (name, server) in [
        ("flex", &env.flex),
        ("conversations", &env.conversations),
        ("taskrouter", &env.taskrouter),
    ] {
        let requests = server.received_requests().await.unwrap();
        assert!(
            requests.is_empty(),
            "nothing may reach {name}: {requests:?}"
        );
    }
}

/// The signature Twilio would send for this form over the app's webhook URL.
fn signature_for(app: &TestApp, params: &[(String, String)]) -> String {
    signature(TOKEN, &app.url(), params)
}

/// The form as reqwest (and Twilio) encode it.
fn encode_form(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// A form POST of these exact bytes to the webhook, with these headers.
async fn post_bytes(app: &TestApp, body: Vec<u8>, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// Its status and its text.
async fn answer(response: reqwest::Response) -> (u16, String) {
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(("127.0.0.1", app.port)).await.unwrap()
}

/// What a raw connection got before the server closed it, when its first byte came, and
/// when it closed.
struct Closed {
    text: String,
    first_byte: Option<Duration>,
    after: Duration,
}

impl Closed {
    /// The status of the first answer, if any came.
    fn status(&self) -> Option<u16> {
        self.text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
    }
}

/// Reads until the server closes the connection (end of stream or reset), counting from
/// `since`; panics if it is still open after `within`.
async fn read_until_closed(
    stream: &mut (impl AsyncReadExt + Unpin),
    since: Instant,
    within: Duration,
) -> Closed {
    let mut read = Vec::new();
    let mut first_byte = None;
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout_at((since + within).into(), stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the connection is still open {within:?} on; it got {:?}",
                String::from_utf8_lossy(&read)
            ),
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => {
                first_byte.get_or_insert_with(|| since.elapsed());
                read.extend_from_slice(&buf[..n]);
            }
        }
    }
    Closed {
        text: String::from_utf8_lossy(&read).into_owned(),
        first_byte,
        after: since.elapsed(),
    }
}

/// `request` (whole or not) on a connection of its own; what came back until the server
/// closed it, timed from the request.
async fn raw(app: &TestApp, request: &[u8]) -> Closed {
    let mut stream = connect(app).await;
    let started = Instant::now();
    let _ = stream.write_all(request).await;
    read_until_closed(&mut stream, started, Duration::from_secs(10)).await
}

/// A request head to the app, as Twilio would address it, closing after its answer.
fn head(app: &TestApp, method: &str, path: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n{extra}\r\n",
        app.port
    )
}

// ---- Content-Encoding ----------------------------------------------------------------

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn a_compressed_body_is_refused_unread_even_when_its_signature_covers_the_decoded_form() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    let params = message(&random_sid("CH"), "+14155550100");
    let signature = signature_for(&app, &params);
    let form = encode_form(&params);

    for encoding in [
        "gzip",
        "GZIP",
        "x-gzip",
        "deflate",
        "br",
        "zstd",
        "gzip, identity",
    ] {
        let response = post_bytes(
            &app,
            gzip(form.as_bytes()),
            &[
                ("content-encoding", encoding),
                ("x-twilio-signature", &signature),
            ],
        )
        .await;
        let (status, text) = answer(response).await;
        assert_eq!(status, 415, "Content-Encoding: {encoding}: {text}");
        assert!(text.contains("uncompressed"), "{text}");
    }
    // Two Content-Encoding headers, even if both say identity: refused the same way.
    let response = app
        .client
        .post(app.url())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("content-encoding", "identity")
        .header("content-encoding", "identity")
        .header("x-twilio-signature", &signature)
        .body(form.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);

    // A gzip bomb (16 MB of zeros in about 16 KB) is refused at once: nothing inflates it.
    let bomb = gzip(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 65_536, "{}", bomb.len());
    let started = Instant::now();
    let response = post_bytes(
        &app,
        bomb,
        &[
            ("content-encoding", "gzip"),
            ("x-twilio-signature", &signature),
        ],
    )
    .await;
    assert_eq!(response.status(), 415);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_nothing_stored_or_sent(app, &env).await;
}

#[tokio::test]
async fn an_identity_content_encoding_is_read_as_plain() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    let ch = random_sid("CH");
    let params = message(&ch, "+14155550100");
    let response = post_bytes(
        &app,
        encode_form(&params).into_bytes(),
        &[
            ("content-encoding", "identity"),
            ("x-twilio-signature", &signature_for(&app, &params)),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(stored_job(&env.store().await, &ch).await.is_some());
    app.stop().await;
}

// ---- Transfer-Encoding: chunked ------------------------------------------------------

/// `body` as HTTP/1.1 chunks of `size` bytes, ended.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test]
async fn a_signed_chunked_form_is_accepted_like_any_other() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    let ch = random_sid("CH");
    let params = message(&ch, "+14155550100");
    let mut request = head(
        &app,
        "POST",
        PATH,
        &format!(
            "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\
             X-Twilio-Signature: {}\r\n",
            signature_for(&app, &params)
        ),
    )
    .into_bytes();
    request.extend(chunked(encode_form(&params).as_bytes(), 7));
    let closed = raw(&app, &request).await;
    assert_eq!(closed.status(), Some(200), "{}", closed.text);
    assert!(stored_job(&env.store().await, &ch).await.is_some());
    app.stop().await;
}

#[tokio::test]
async fn an_endless_chunked_body_gets_413_once_past_max_body_bytes_and_is_then_cut_off() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &with_slow(&[("server.max_body_bytes", "4096")])).await;
    let request = head(
        &app,
        "POST",
        PATH,
        "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\
         X-Twilio-Signature: x\r\n",
    );
    let (mut reader, mut writer) = connect(&app).await.into_split();
    let started = Instant::now();
    let sending = tokio::spawn(async move {
        writer.write_all(request.as_bytes()).await?;
        let chunk = format!("1000\r\n{}\r\n", "a".repeat(0x1000));
        // A body without end: 64 KB at once, then a chunk every 100 ms, until cut off.
        for sent in 0usize.. {
            writer.write_all(chunk.as_bytes()).await?;
            if sent >= 16 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok::<(), std::io::Error>(())
    });
    let closed = read_until_closed(&mut reader, started, Duration::from_secs(15)).await;
    assert_eq!(closed.status(), Some(413), "{}", closed.text);
    let answered = closed.first_byte.unwrap();
    assert!(
        answered < Duration::from_secs(2),
        "answered after {answered:?}"
    );
    // actix reads the rest of a chunked body after an early answer, untimed: the
    // connection's watchdog ends that once the client has kept it waiting for its patience.
    assert_between(
        closed.after - answered,
        PATIENCE - WATCHDOG_EARLY,
        PATIENCE + MARGIN,
        "closed after the 413",
    );
    let sent = tokio::time::timeout(Duration::from_secs(5), sending).await;
    assert!(
        matches!(sent, Ok(Ok(Err(_)))),
        "the sender was cut off: {sent:?}"
    );
    assert_nothing_stored_or_sent(app, &env).await;
}

// ---- Invalid UTF-8, invalid percent-encoding -----------------------------------------

#[tokio::test]
async fn invalid_utf8_and_malformed_escapes_get_400_whoever_signed_them() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    let ch = random_sid("CH");
    let form = encode_form(&message(&ch, "+14155550100"));
    let raw_ff = {
        let mut body = form.clone().into_bytes();
        body.extend_from_slice(b"&Body=caf\xe9");
        body
    };
    let bodies: Vec<Vec<u8>> = vec![
        raw_ff,
        format!("{form}&Body=%FF").into_bytes(),
        format!("{form}&Body=%C3%28").into_bytes(),
        format!("{form}&Body=%ED%A0%80").into_bytes(), // a UTF-16 surrogate
        format!("{form}&Body=%zz").into_bytes(),
        format!("{form}&Body=100%").into_bytes(),
        format!("{form}&Body=%4").into_bytes(),
        format!("{form}&B%FFdy=x").into_bytes(),
        format!("{form}&%=x").into_bytes(),
    ];
    for body in bodies {
        // What a lenient parser would make of it, signed: a signature over text that was
        // never sent. Refused like a forged one.
        let lenient: Vec<(String, String)> = form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for signature in [signature_for(&app, &lenient), "forged".to_owned()] {
            let response =
                post_bytes(&app, body.clone(), &[("x-twilio-signature", &signature)]).await;
            let (status, text) = answer(response).await;
            assert_eq!(
                (status, text.as_str()),
                (400, "malformed form body: not percent-encoded UTF-8"),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    // JSON: the signature covers the bytes (bodySHA256), so a forged one is 403 and a
    // signed one that is not UTF-8 JSON is 400.
    let json = b"{\"EventType\":\"onMessageAdded\",\"Body\":\"\xff\"}".to_vec();
    let url = format!(
        "{}?bodySHA256={}",
        app.url(),
        flexhook::signature::body_sha256(&json)
    );
    let signed = signature(TOKEN, &url, &[]);
    for (signature, expected) in [(signed.as_str(), 400), ("forged", 403)] {
        let response = app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-twilio-signature", signature)
            .body(json.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected);
    }
    assert_nothing_stored_or_sent(app, &env).await;
}

#[test]
fn a_lenient_parser_would_have_accepted_the_signature_over_u_fffd() {
    // Why the strict decoding matters: `%FF` and a real U+FFFD read the same leniently.
    let lenient: Vec<(String, String)> = form_urlencoded::parse(b"Body=%FF")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(lenient, vec![("Body".to_owned(), "\u{FFFD}".to_owned())]);
}

// ---- 10,000 parameters ---------------------------------------------------------------

#[tokio::test]
async fn ten_thousand_parameters_are_answered_at_once() {
    let env = Env::new().await;
    // Room for 10,000 parameters; the last case shows the limit still holds.
    let app = TestApp::start(&env, &[("server.max_body_bytes", "262144")]).await;
    let ch = random_sid("CH");
    let mut distinct = message(&ch, "+14155550100");
    distinct.extend((0..10_000).map(|i| (format!("Param{i}"), format!("{i}"))));
    let mut repeated = message(&ch, "+14155550100");
    repeated.extend((0..10_000).map(|i| ("Param".to_owned(), format!("{i}"))));

    for params in [distinct, repeated] {
        // Forged: parsed, sorted, checked against every URL variant, refused.
        let started = Instant::now();
        let response = post_bytes(
            &app,
            encode_form(&params).into_bytes(),
            &[("x-twilio-signature", "forged")],
        )
        .await;
        assert_eq!(response.status(), 403);
        let forged = started.elapsed();
        // Signed, but from another account: verified and parsed, then refused.
        let other = with(params, "AccountSid", "AC99999999999999999999999999999999");
        let started = Instant::now();
        let response = post_bytes(
            &app,
            encode_form(&other).into_bytes(),
            &[("x-twilio-signature", &signature_for(&app, &other))],
        )
        .await;
        assert_eq!(response.status(), 403);
        let signed = started.elapsed();
        // Linear work takes about 100 ms here (a debug build); a quadratic parse, sort or
        // canonical string would take seconds.
        assert!(
            forged < Duration::from_secs(1) && signed < Duration::from_secs(1),
            "forged {forged:?}, signed {signed:?}"
        );
    }

    // 10,000 parameters that do not fit server.max_body_bytes: 413, unparsed.
    let mut big = message(&ch, "+14155550100");
    big.extend((0..10_000).map(|i| (format!("Parameter{i:05}"), "x".repeat(20))));
    let body = encode_form(&big);
    assert!(body.len() > 262_144, "{}", body.len());
    let response = post_bytes(&app, body.into_bytes(), &[("x-twilio-signature", "forged")]).await;
    assert_eq!(response.status(), 413);
    assert_nothing_stored_or_sent(app, &env).await;
}

// ---- Huge heads ----------------------------------------------------------------------

#[tokio::test]
async fn a_megabyte_header_gets_431_and_the_connection_is_closed() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    let form = encode_form(&message(&random_sid("CH"), "+14155550100"));
    let request = head(
        &app,
        "POST",
        PATH,
        &format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             X-Twilio-Signature: x\r\nX-Padding: {}\r\n",
            form.len(),
            "a".repeat(1 << 20)
        ),
    ) + &form;
    // actix stops reading a head at 128 KB: it answers 431 and closes, without the rest.
    let closed = raw(&app, request.as_bytes()).await;
    assert_eq!(closed.status(), Some(431), "{:?}", closed.text);

    // More headers than actix takes (96): the same.
    let many: String = (0..200).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let closed = raw(&app, head(&app, "POST", PATH, &many).as_bytes()).await;
    assert_eq!(closed.status(), Some(431), "{:?}", closed.text);
    assert_nothing_stored_or_sent(app, &env).await;
}

// ---- Duplicate signature headers -----------------------------------------------------

#[tokio::test]
async fn two_signature_headers_are_refused_even_when_one_is_valid() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    let params = message(&random_sid("CH"), "+14155550100");
    let valid = signature_for(&app, &params);
    let invalid = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    for (first, second) in [
        (valid.as_str(), invalid),
        (invalid, valid.as_str()),
        (valid.as_str(), valid.as_str()),
    ] {
        let response = app
            .client
            .post(app.url())
            .header("x-twilio-signature", first)
            .header("x-twilio-signature", second)
            .form(&params)
            .send()
            .await
            .unwrap();
        let (status, text) = answer(response).await;
        assert_eq!(
            (status, text.as_str()),
            (403, "more than one X-Twilio-Signature header")
        );
    }
    // The SharedKey settings header twice (the signature itself valid for the auth token):
    // refused the same way.
    let response = app
        .post_signed(params)
        .header("X-Twilio-Webhooks-Signature-Settings", "algorithm=")
        .header("X-Twilio-Webhooks-Signature-Settings", "algorithm=")
        .send()
        .await;
    let (status, text) = answer(response).await;
    assert_eq!(
        (status, text.as_str()),
        (
            403,
            "more than one X-Twilio-Webhooks-Signature-Settings header"
        )
    );
    assert_nothing_stored_or_sent(app, &env).await;
}

// ---- Methods, paths, framing ---------------------------------------------------------

#[tokio::test]
async fn unknown_methods_and_paths_get_404_or_405_never_500() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    let params = message(&random_sid("CH"), "+14155550100");
    let signature = signature_for(&app, &params);
    let send = |method: reqwest::Method, path: &str| {
        app.client
            .request(method, format!("{}{path}", app.address))
            .header("x-twilio-signature", &signature)
            .form(&params)
            .send()
    };
    let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
    for path in [PATH, "/webhooks/taskrouter"] {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::HEAD,
            reqwest::Method::PUT,
            reqwest::Method::PATCH,
            reqwest::Method::DELETE,
            reqwest::Method::OPTIONS,
            brew.clone(),
        ] {
            let response = send(method.clone(), path).await.unwrap();
            assert_eq!(response.status(), 405, "{method} {path}");
        }
    }
    for (method, path) in [
        (reqwest::Method::POST, "/"),
        (reqwest::Method::POST, "/webhooks"),
        (reqwest::Method::POST, "/webhooks/conversations/extra"),
        (reqwest::Method::POST, "/webhooks/Conversations"),
        (reqwest::Method::POST, "/%zz"),
        (reqwest::Method::POST, "/healthz/../webhooks/x"),
        (reqwest::Method::GET, "/.env"),
        (brew.clone(), "/coffee"),
        (brew, "/healthz"),
    ] {
        let response = send(method.clone(), path).await.unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
    }
    // A path the router decodes to the webhook's: it is the webhook, and its signature is
    // checked over the URL as sent, which Twilio never signed.
    let response = send(reqwest::Method::POST, "/webhooks/%63onversations")
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // What reqwest will not send: a garbage request line, absurd methods and targets, and
    // the framing of request smuggling (two lengths, or a length and chunked): actix
    // answers 400. An extension method of any length is still a method: 405.
    let form_head = |framing: &str| {
        head(
            &app,
            "POST",
            PATH,
            &format!("Content-Type: application/x-www-form-urlencoded\r\n{framing}"),
        )
    };
    for (request, status) in [
        ("\x00\x01\x02 nonsense\r\n\r\n".to_owned(), 400),
        (head(&app, "B R E W", PATH, ""), 400),
        (head(&app, &"X".repeat(10_000), PATH, ""), 405),
        (head(&app, "POST", "webhooks/conversations", ""), 400),
        (
            form_head("Content-Length: 3\r\nContent-Length: 4\r\n") + "a=bc",
            400,
        ),
        (
            form_head("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n") + "0\r\n\r\n",
            400,
        ),
    ] {
        let closed = raw(&app, request.as_bytes()).await;
        assert_eq!(
            closed.status(),
            Some(status),
            "{:?}: {:?}",
            request.get(..60),
            closed.text
        );
    }
    assert_nothing_stored_or_sent(app, &env).await;
}

// ---- Slow clients --------------------------------------------------------------------

/// Short client timeouts, so that the slow-client tests take seconds. 1000 ms is the
/// shortest actix's timers keep (it reads its clock every 500 ms, so they may also fire
/// up to 500 ms early).
const SLOW: &[(&str, &str)] = &[
    ("server.client_request_timeout_ms", "1000"),
    ("server.client_body_timeout_ms", "1000"),
    ("server.client_disconnect_timeout_ms", "1000"),
    ("server.keep_alive_secs", "1"),
];
const HEAD_TIMEOUT: Duration = Duration::from_millis(1000);
const BODY_TIMEOUT: Duration = Duration::from_millis(1000);
const DISCONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// keep-alive + head + disconnect: how long a connection may wait for its client between
/// two answers.
const PATIENCE: Duration = Duration::from_millis(3000);
/// The watchdog counts from when a handler returned, a moment before its answer arrives.
const WATCHDOG_EARLY: Duration = Duration::from_millis(100);
/// How late a connection may close; actix's timers may also be this early.
const MARGIN: Duration = Duration::from_millis(1000);
const ACTIX_EARLY: Duration = Duration::from_millis(600);

fn with_slow<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    SLOW.iter().chain(extra).copied().collect()
}

fn assert_between(actual: Duration, at_least: Duration, below: Duration, what: &str) {
    assert!(
        at_least <= actual && actual < below,
        "{what}: {actual:?}, expected between {at_least:?} and {below:?}"
    );
}

#[tokio::test]
async fn a_client_that_stalls_in_its_head_gets_408_and_is_cut_off() {
    let env = Env::new().await;
    let app = TestApp::start(&env, SLOW).await;
    let closed = raw(
        &app,
        b"POST /webhooks/conversations HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Twil",
    )
    .await;
    assert_eq!(closed.status(), Some(408), "{:?}", closed.text);
    assert_between(
        closed.after,
        HEAD_TIMEOUT - ACTIX_EARLY,
        HEAD_TIMEOUT + MARGIN,
        "closed",
    );
    assert_nothing_stored_or_sent(app, &env).await;
}

#[tokio::test]
async fn a_body_that_stalls_or_trickles_gets_408_at_its_deadline_and_is_cut_off() {
    let env = Env::new().await;
    let app = TestApp::start(&env, SLOW).await;
    let form = encode_form(&message(&random_sid("CH"), "+14155550100")).into_bytes();
    // Stalled after 10 bytes, or one byte every 50 ms (never idle long, far too slow in
    // all); with a Content-Length, or chunked.
    for (trickle, chunked_body) in [(false, false), (true, false), (false, true), (true, true)] {
        let framing = if chunked_body {
            "Transfer-Encoding: chunked\r\n".to_owned()
        } else {
            format!("Content-Length: {}\r\n", form.len())
        };
        let request = head(
            &app,
            "POST",
            PATH,
            &format!(
                "Content-Type: application/x-www-form-urlencoded\r\n{framing}\
                 X-Twilio-Signature: x\r\n"
            ),
        );
        let (mut reader, mut writer) = connect(&app).await.into_split();
        // Timed from before the head is sent: the server's deadline starts once it has the
        // head, which on a loaded machine can be before this task runs again.
        let started = Instant::now();
        writer.write_all(request.as_bytes()).await.unwrap();
        let body = form.clone();
        let sending = tokio::spawn(async move {
            let bytes = if trickle { &body[..] } else { &body[..10] };
            for &byte in bytes {
                let piece = if chunked_body {
                    [b"1\r\n".as_slice(), &[byte], b"\r\n"].concat()
                } else {
                    vec![byte]
                };
                if writer.write_all(&piece).await.is_err() {
                    return;
                }
                if trickle {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            // Stalled: keep the connection open until the server ends it.
            std::future::pending::<()>().await;
        });
        let closed = read_until_closed(&mut reader, started, Duration::from_secs(15)).await;
        sending.abort();
        let case = format!("trickle={trickle} chunked={chunked_body}");
        assert_eq!(closed.status(), Some(408), "{case}: {:?}", closed.text);
        assert!(
            closed.text.contains("server.client_body_timeout_ms"),
            "{case}: {}",
            closed.text
        );
        let answered = closed.first_byte.unwrap();
        assert_between(answered, BODY_TIMEOUT, BODY_TIMEOUT + MARGIN, &case);
        // With a Content-Length, actix lingers for the disconnect timeout, then closes;
        // a chunked body's rest it would read for ever, so the watchdog ends it.
        let (at_least, below) = if chunked_body {
            (PATIENCE - WATCHDOG_EARLY, PATIENCE + MARGIN)
        } else {
            (
                DISCONNECT_TIMEOUT - ACTIX_EARLY,
                DISCONNECT_TIMEOUT + MARGIN,
            )
        };
        assert_between(closed.after - answered, at_least, below, &case);
    }
    assert_nothing_stored_or_sent(app, &env).await;
}

#[tokio::test]
async fn a_stalled_body_to_a_route_that_reads_none_is_cut_off() {
    let env = Env::new().await;
    let app = TestApp::start(&env, SLOW).await;
    // Answered at once (actix's empty 404 and 405 included), then the body's rest is not
    // waited for: the connection lingers for the disconnect timeout and closes.
    for (method, path, status) in [
        ("GET", "/healthz", 200),
        ("POST", "/nowhere", 404),
        ("PUT", PATH, 405),
    ] {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\nabc"
        );
        let closed = raw(&app, request.as_bytes()).await;
        assert_eq!(
            closed.status(),
            Some(status),
            "{method} {path}: {:?}",
            closed.text
        );
        assert_between(
            closed.after,
            Duration::ZERO,
            DISCONNECT_TIMEOUT + MARGIN,
            &format!("{method} {path}"),
        );
    }
    assert_nothing_stored_or_sent(app, &env).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_keep_alive_secs() {
    let env = Env::new().await;
    let app = TestApp::start(&env, SLOW).await;
    let closed = raw(&app, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(closed.status(), Some(200), "{:?}", closed.text);
    let keep_alive = Duration::from_secs(1);
    assert_between(
        closed.after,
        keep_alive - ACTIX_EARLY,
        keep_alive + MARGIN,
        "closed",
    );
    assert_nothing_stored_or_sent(app, &env).await;
}

#[tokio::test]
async fn a_later_request_that_stalls_in_its_head_is_cut_off_by_the_watchdog() {
    let env = Env::new().await;
    let app = TestApp::start(&env, SLOW).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let answered = Instant::now();
    // actix times only a connection's first head: this one, it would wait for for ever.
    stream
        .write_all(b"POST /webhooks/conversations HTTP/1.1\r\nHost: 1")
        .await
        .unwrap();
    let closed = read_until_closed(&mut stream, answered, Duration::from_secs(10)).await;
    assert_eq!(closed.text, "", "no answer, the connection is shut");
    assert_between(
        closed.after,
        PATIENCE - WATCHDOG_EARLY,
        PATIENCE + MARGIN,
        "closed",
    );
    assert_nothing_stored_or_sent(app, &env).await;
}

#[tokio::test]
async fn a_kept_alive_connection_in_use_is_never_cut() {
    let env = Env::new().await;
    let app = TestApp::start(&env, SLOW).await;
    let mut stream = connect(&app).await;
    let started = Instant::now();
    // One request every 200 ms, for twice the patience: well inside `keep_alive_secs = 1`
    // even when actix's keep-alive timer fires early (its clock is a cached date, up to
    // 500 ms stale), so that only the watchdog could cut this connection.
    while started.elapsed() < PATIENCE * 2 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "after {:?}: {:?}",
            started.elapsed(),
            String::from_utf8_lossy(&buf[..n])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}

#[test]
fn client_timeouts_out_of_range_are_refused_naming_the_key() {
    for (key, value, says) in [
        (
            "server.client_request_timeout_ms",
            "0",
            "between 1000 and 60000",
        ),
        (
            "server.client_request_timeout_ms",
            "500",
            "between 1000 and 60000",
        ),
        ("server.client_body_timeout_ms", "0", "between 1 and 60000"),
        (
            "server.client_body_timeout_ms",
            "600000",
            "between 1 and 60000",
        ),
        (
            "server.client_disconnect_timeout_ms",
            "999",
            "between 1000 and 60000",
        ),
        ("server.keep_alive_secs", "3601", "at most 300"),
    ] {
        let text = settings_error(&[(key, value)]);
        assert!(
            text.contains(key) && text.contains(says),
            "{key}={value}: {text}"
        );
    }
}
