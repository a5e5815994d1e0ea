//! The one Flex stand-in: Twilio as a network and a Flex that lie, as a script says, and
//! that can hold to Twilio's rate limit ([`FlexStandIn::limit_per_second`]). One local
//! HTTP/1.1 server (a tokio `TcpListener`, since wiremock cannot reset a connection)
//! answers flex-api, TaskRouter and Conversations on one base URL.
//!
//! `POST /v1/Interactions` records the interaction *before* it answers, or fails to: a 200
//! that is not JSON, a 200 without `sid`, a reset connection and a 200 long past the
//! client's timeout all leave an interaction behind, as they would at Twilio. TaskRouter's
//! task list (`EvaluateTaskAttributes=conversationSid == "CH…"`) answers truthfully from
//! what was created, in the shape of Twilio's spec, with the attributes Flex gives a task:
//! the request's `Routing` attributes plus `flexInteractionSid` and
//! `flexInteractionChannelSid`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How `POST /v1/Interactions` answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Creates, and answers 200 with the interaction, as the spec shows it.
    Created,
    /// Creates, and answers that 200 only after this long (past the client's timeout, or
    /// merely slow).
    CreatedAfter(Duration),
    /// Creates, then answers 200 with a body that is not JSON.
    CreatedNotJson,
    /// Creates, then answers 200 with JSON that has no `sid`.
    CreatedWithoutSid,
    /// Creates, then resets the connection (RST) before answering.
    CreatedThenReset,
    /// Creates, then answers 500 all the same.
    CreatedThen500,
    /// Answers 500 without creating.
    Failed500,
    /// Answers 429 (never creates), with this `Retry-After` if any.
    RateLimited(Option<String>),
    /// Answers 429 (never creates), without `Retry-After`: the request came past
    /// [`FlexStandIn::limit_per_second`], whatever the script says.
    OverTheLimit,
}

impl Answer {
    fn creates(&self) -> bool {
        !matches!(
            self,
            Self::Failed500 | Self::RateLimited(_) | Self::OverTheLimit
        )
    }
}

/// One interaction the stand-in created, with its channel and task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub sid: String,
    created_at: Instant,
    pub channel_sid: String,
    pub task_sid: String,
    workspace_sid: String,
    workflow_sid: String,
    attributes: Value,
}

/// One `POST /v1/Interactions` as it arrived.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub at: Instant,
    pub conversation: String,
    pub answer: Answer,
}

/// Decides the answer to the `n`th create request (0 = the first) of a conversation, for
/// the requests within the rate limit.
type Script = Box<dyn FnMut(&str, usize) -> Answer + Send>;

struct Ledger {
    script: Script,
    creates: Vec<CreateRequest>,
    interactions: HashMap<String, Vec<Interaction>>,
    lookups: HashMap<String, usize>,
    webhook_deletes: Vec<String>,
    webhook_delete_status: u16,
    /// How long after its create a task shows in TaskRouter (creation is asynchronous).
    task_delay: Duration,
    /// At most this many create requests in any one second; past it, 429.
    limit_per_second: Option<usize>,
}

/// A running stand-in; it stops when dropped (a held answer is then never sent).
pub struct FlexStandIn {
    uri: String,
    ledger: Arc<Mutex<Ledger>>,
    server: JoinHandle<()>,
}

impl Drop for FlexStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FlexStandIn {
    /// Starts on a free port; `script` answers each create request.
    pub async fn start(script: impl FnMut(&str, usize) -> Answer + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let ledger = Arc::new(Mutex::new(Ledger {
            script: Box::new(script),
            creates: Vec::new(),
            interactions: HashMap::new(),
            lookups: HashMap::new(),
            webhook_deletes: Vec::new(),
            webhook_delete_status: 204,
            task_delay: Duration::ZERO,
            limit_per_second: None,
        }));
        let server = tokio::spawn(accept(listener, ledger.clone()));
        Self {
            uri,
            ledger,
            server,
        }
    }

    /// Answers every create request with `answer` first, then [`Answer::Created`].
    pub async fn lying_once(answer: Answer) -> Self {
        Self::start(move |_, n| {
            if n == 0 {
                answer.clone()
            } else {
                Answer::Created
            }
        })
        .await
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The settings that point all three of Twilio's APIs here.
    pub fn settings(&self) -> [(&'static str, &str); 3] {
        [
            ("twilio.flex_api_base_url", self.uri()),
            ("twilio.conversations_api_base_url", self.uri()),
            ("twilio.taskrouter_api_base_url", self.uri()),
        ]
    }

    /// `DELETE …/Webhooks/{WH}` answers this from now on: 204, or 404 (Twilio's 20404) as
    /// for a conversation that is already closed.
    pub fn answer_webhook_deletes_with(&self, status: u16) {
        self.ledger().webhook_delete_status = status;
    }

    /// From now on a task shows in TaskRouter only this long after its create arrived, as
    /// Twilio's asynchronous creation can take.
    pub fn tasks_appear_after(&self, delay: Duration) {
        self.ledger().task_delay = delay;
    }

    /// From now on, as Twilio documents its limit: a create request that comes when `limit`
    /// others (whatever their answer) came within the last second gets a 429,
    /// [`Answer::OverTheLimit`], and the script is not asked.
    pub fn limit_per_second(&self, limit: usize) {
        self.ledger().limit_per_second = Some(limit);
    }

    /// How many create requests came past the limit.
    pub fn over_the_limit(&self) -> usize {
        self.ledger()
            .creates
            .iter()
            .filter(|c| c.answer == Answer::OverTheLimit)
            .count()
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The interactions created for the conversation, in order.
    pub fn interactions(&self, conversation: &str) -> Vec<Interaction> {
        self.ledger()
            .interactions
            .get(conversation)
            .cloned()
            .unwrap_or_default()
    }

    /// How many interactions each conversation got.
    pub fn interaction_counts(&self) -> HashMap<String, usize> {
        self.ledger()
            .interactions
            .iter()
            .map(|(ch, created)| (ch.clone(), created.len()))
            .collect()
    }

    /// Every `POST /v1/Interactions`, as it arrived.
    pub fn create_requests(&self) -> Vec<CreateRequest> {
        self.ledger().creates.clone()
    }

    /// The `POST /v1/Interactions` of one conversation.
    pub fn create_requests_for(&self, conversation: &str) -> usize {
        self.ledger()
            .creates
            .iter()
            .filter(|c| c.conversation == conversation)
            .count()
    }

    /// TaskRouter task lookups asking for the conversation.
    pub fn lookups(&self, conversation: &str) -> usize {
        self.ledger()
            .lookups
            .get(conversation)
            .copied()
            .unwrap_or(0)
    }

    /// The paths of the `DELETE …/Webhooks/{WH}` requests.
    pub fn webhook_deletes(&self) -> Vec<String> {
        self.ledger().webhook_deletes.clone()
    }

    /// The most create requests that arrived within any one second.
    pub fn peak_creates_per_second(&self) -> usize {
        let mut times: Vec<Instant> = self.ledger().creates.iter().map(|c| c.at).collect();
        times.sort();
        let mut peak = 0;
        let mut first = 0;
        for (last, t) in times.iter().enumerate() {
            while t.duration_since(times[first]) >= Duration::from_secs(1) {
                first += 1;
            }
            peak = peak.max(last + 1 - first);
        }
        peak
    }
}

async fn accept(listener: TcpListener, ledger: Arc<Mutex<Ledger>>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        connections.spawn(connection(stream, ledger.clone()));
        while connections.try_join_next().is_some() {}
    }
}

/// An HTTP request as the stand-in reads it.
struct Request {
    method: String,
    url: url::Url,
    body: Vec<u8>,
}

/// What to do with a connection after a request.
enum Reply {
    Send(Response),
    After(Duration, Response),
    Reset,
}

struct Response {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Response {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    fn twilio_error(status: u16, code: i64, message: &str) -> Self {
        Self::json(
            status,
            json!({
                "code": code,
                "message": message,
                "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
                "status": status,
            }),
        )
    }

    fn empty(status: u16) -> Self {
        Self {
            status,
            content_type: "text/plain",
            headers: Vec::new(),
            body: String::new(),
        }
    }

    async fn write(&self, stream: &mut TcpStream) -> std::io::Result<()> {
        let reason = reqwest::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Unknown");
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(self.body.as_bytes()).await
    }
}

/// Serves one keep-alive connection until the client closes it or an answer resets it.
async fn connection(mut stream: TcpStream, ledger: Arc<Mutex<Ledger>>) {
    let mut buffer = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buffer).await {
        let reply = handle(&ledger, &request);
        let response = match reply {
            Reply::Send(response) => response,
            Reply::After(delay, response) => {
                tokio::time::sleep(delay).await;
                response
            }
            Reply::Reset => {
                // SO_LINGER 0: closing sends RST, not FIN.
                let _ = stream.set_zero_linger();
                return;
            }
        };
        if response.write(&mut stream).await.is_err() {
            return;
        }
    }
}

/// The next request on the connection; `None` once it is closed or unreadable.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut head = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head_len) = head.parse(buffer).ok()? {
            let length: usize = head
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0);
            if buffer.len() >= head_len + length {
                let method = head.method?.to_owned();
                let url = url::Url::parse(&format!("http://stand-in{}", head.path?)).ok()?;
                let body = buffer[head_len..head_len + length].to_vec();
                buffer.drain(..head_len + length);
                return Some(Request { method, url, body });
            }
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

fn handle(ledger: &Mutex<Ledger>, request: &Request) -> Reply {
    let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
    let segments: Vec<&str> = request
        .url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "Interactions"]) => ledger.create(&request.body),
        ("GET", ["v1", "Workspaces", workspace, "Tasks"]) => {
            Reply::Send(ledger.list_tasks(workspace, &request.url))
        }
        ("GET", ["v1", "Workspaces", _, "Tasks", task]) => Reply::Send(ledger.fetch_task(task)),
        ("DELETE", [.., "Webhooks", _]) => {
            ledger.webhook_deletes.push(request.url.path().to_owned());
            Reply::Send(match ledger.webhook_delete_status {
                404 => Response::twilio_error(404, 20404, "The requested resource was not found"),
                status => Response::empty(status),
            })
        }
        _ => Reply::Send(Response::twilio_error(
            404,
            20404,
            "The requested resource was not found",
        )),
    }
}

/// The JSON object in one form field.
fn form_field(body: &[u8], field: &str) -> Value {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == field)
        .and_then(|(_, v)| serde_json::from_str(&v).ok())
        .unwrap_or(Value::Null)
}

fn sid(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

impl Ledger {
    fn create(&mut self, body: &[u8]) -> Reply {
        let channel = form_field(body, "Channel");
        let routing = form_field(body, "Routing");
        let conversation = channel["properties"]["media_channel_sid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if conversation.is_empty() || routing["properties"].is_null() {
            return Reply::Send(Response::twilio_error(
                400,
                20001,
                "Channel and Routing are required",
            ));
        }
        let nth = self
            .creates
            .iter()
            .filter(|c| c.conversation == conversation)
            .count();
        let now = Instant::now();
        let answer = if self.limit_per_second.is_some_and(|limit| {
            let second_ago = now.checked_sub(Duration::from_secs(1));
            let in_window = self
                .creates
                .iter()
                .rev()
                .take_while(|c| second_ago.map_or(true, |s| c.at > s))
                .count();
            in_window >= limit
        }) {
            Answer::OverTheLimit
        } else {
            (self.script)(&conversation, nth)
        };
        self.creates.push(CreateRequest {
            at: now,
            conversation: conversation.clone(),
            answer: answer.clone(),
        });
        let interaction = answer
            .creates()
            .then(|| self.record_interaction(&conversation, &routing));
        let ok = |interaction: &Interaction| Response::json(200, interaction.answer(&channel));
        match (answer, interaction) {
            (Answer::Created, Some(i)) => Reply::Send(ok(&i)),
            (Answer::CreatedAfter(delay), Some(i)) => Reply::After(delay, ok(&i)),
            (Answer::CreatedNotJson, Some(_)) => Reply::Send(Response {
                status: 200,
                content_type: "text/html",
                headers: Vec::new(),
                body: "<html><body>OK</body></html>".into(),
            }),
            (Answer::CreatedWithoutSid, Some(i)) => {
                let mut answer = i.answer(&channel);
                answer.as_object_mut().unwrap().remove("sid");
                Reply::Send(Response::json(200, answer))
            }
            (Answer::CreatedThenReset, Some(_)) => Reply::Reset,
            (Answer::CreatedThen500 | Answer::Failed500, _) => {
                Reply::Send(Response::twilio_error(500, 20500, "Internal Server Error"))
            }
            (Answer::OverTheLimit, _) => {
                Reply::Send(Response::twilio_error(429, 20429, "Too Many Requests"))
            }
            (Answer::RateLimited(retry_after), _) => {
                let mut response = Response::twilio_error(429, 20429, "Too Many Requests");
                response
                    .headers
                    .extend(retry_after.map(|v| ("retry-after", v)));
                Reply::Send(response)
            }
            (answer, None) => unreachable!("{answer:?} creates"),
        }
    }

    fn record_interaction(&mut self, conversation: &str, routing: &Value) -> Interaction {
        let properties = &routing["properties"];
        let interaction = Interaction {
            sid: sid("KD"),
            created_at: Instant::now(),
            channel_sid: sid("UO"),
            task_sid: sid("WT"),
            workspace_sid: properties["workspace_sid"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            workflow_sid: properties["workflow_sid"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            attributes: properties["attributes"].clone(),
        };
        self.interactions
            .entry(conversation.to_owned())
            .or_default()
            .push(interaction.clone());
        interaction
    }

    /// `GET /v1/Workspaces/{WS}/Tasks`: the tasks whose attributes match
    /// `EvaluateTaskAttributes`, which must be `conversationSid == "CH…"` (the only
    /// expression this stand-in evaluates; anything else is Twilio's 400).
    fn list_tasks(&mut self, workspace: &str, url: &url::Url) -> Response {
        let expression = url
            .query_pairs()
            .find(|(k, _)| k == "EvaluateTaskAttributes")
            .map(|(_, v)| v.into_owned());
        let wanted = expression.as_deref().and_then(|e| {
            let value = e.strip_prefix("conversationSid == \"")?.strip_suffix('"')?;
            (!value.contains('"')).then(|| value.to_owned())
        });
        let Some(conversation) = wanted else {
            return Response::twilio_error(
                400,
                20001,
                &format!("Invalid EvaluateTaskAttributes: {expression:?}"),
            );
        };
        *self.lookups.entry(conversation.clone()).or_default() += 1;
        let tasks: Vec<Value> = self
            .interactions
            .values()
            .flatten()
            .filter(|i| i.workspace_sid == workspace)
            .filter(|i| i.created_at.elapsed() >= self.task_delay)
            .filter(|i| i.task_attributes()["conversationSid"] == conversation.as_str())
            .map(Interaction::task)
            .collect();
        let page_url = format!(
            "https://taskrouter.twilio.com/v1/Workspaces/{workspace}/Tasks?PageSize=20&Page=0"
        );
        Response::json(
            200,
            json!({
                "tasks": tasks,
                "meta": {
                    "first_page_url": page_url,
                    "key": "tasks",
                    "next_page_url": null,
                    "page": 0,
                    "page_size": 20,
                    "previous_page_url": null,
                    "url": page_url,
                },
            }),
        )
    }

    /// `GET /v1/Workspaces/{WS}/Tasks/{WT}`.
    fn fetch_task(&self, task: &str) -> Response {
        match self
            .interactions
            .values()
            .flatten()
            .filter(|i| i.created_at.elapsed() >= self.task_delay)
            .find(|i| i.task_sid == task)
        {
            Some(i) => Response::json(200, i.task()),
            None => Response::twilio_error(404, 20404, "The requested resource was not found"),
        }
    }
}

impl Interaction {
    /// The task's attributes as Flex sets them: the request's, plus the interaction's SIDs.
    fn task_attributes(&self) -> Value {
        let mut attributes = self.attributes.clone();
        if let Some(map) = attributes.as_object_mut() {
            map.insert("flexInteractionSid".into(), json!(self.sid));
            map.insert("flexInteractionChannelSid".into(), json!(self.channel_sid));
        }
        attributes
    }

    /// The task, as TaskRouter lists and fetches it.
    fn task(&self) -> Value {
        json!({
            "sid": self.task_sid,
            "workspace_sid": self.workspace_sid,
            "workflow_sid": self.workflow_sid,
            "assignment_status": "pending",
            "attributes": self.task_attributes().to_string(),
            "task_channel_unique_name": "chat",
            "url": format!(
                "https://taskrouter.twilio.com/v1/Workspaces/{}/Tasks/{}",
                self.workspace_sid, self.task_sid
            ),
        })
    }

    /// Flex's 200 to the create, as in the spec's example.
    fn answer(&self, channel: &Value) -> Value {
        json!({
            "sid": self.sid,
            "channel": {"type": channel["type"], "sid": self.channel_sid},
            "routing": {"properties": {
                "sid": self.task_sid,
                "workspace_sid": self.workspace_sid,
                "workflow_sid": self.workflow_sid,
                "assignment_status": "pending",
                "attributes": self.task_attributes().to_string(),
            }},
            "url": format!("https://flex-api.twilio.com/v1/Interactions/{}", self.sid),
        })
    }
}
