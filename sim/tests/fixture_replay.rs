//! Replays the recorded real Meilisearch v1.50.0 responses (`tests/fixtures/*.jsonl`, see the README
//! there) against one fresh node model per file and compares status and body after normalising the
//! volatile fields exactly like `replay.py` does.
//!
//! Steps that differ on purpose are listed in [`ALLOWED_DIFFERENCES`] with the reason. Every other step
//! must match exactly, and a listed step that starts matching fails the test too, so the list stays
//! honest. Set `FIXTURE_SHOW=1` to print the differences.

use miroir_sim::model::{Method, Node, Request};
use serde_json::Value;

/// `(file, step name, reason)`.
const ALLOWED_DIFFERENCES: &[(&str, &str, &str)] = &[];

const VOLATILE: &[&str] = &[
    "uid",
    "taskUid",
    "batchUid",
    "enqueuedAt",
    "startedAt",
    "finishedAt",
    "duration",
    "processingTimeMs",
    "requestUid",
    "createdAt",
    "updatedAt",
    "canceledBy",
];

fn norm(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    let nv = if VOLATILE.contains(&k.as_str()) && !x.is_null() {
                        Value::String("<v>".into())
                    } else {
                        norm(x)
                    };
                    (k.clone(), nv)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
        other => other.clone(),
    }
}

struct Outcome {
    name: String,
    matched: bool,
    detail: String,
}

fn replay(file: &str, text: &str) -> Vec<Outcome> {
    let mut node = Node::new(Some("masterKey"));
    let mut now: u64 = 1_795_771_381_000;
    let mut last_task: Option<u64> = None;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: Value = serde_json::from_str(line).expect("fixture line is JSON");
        let name = e["name"].as_str().unwrap_or_default().to_string();
        let rq = &e["request"];
        now += 7;
        let (status, body) = if name.ends_with(" / task") {
            node.run_until_idle(now);
            match last_task {
                Some(uid) => {
                    let r = node.handle(Request::get(&format!("/tasks/{uid}")).bearer("masterKey"), now);
                    (r.status, r.body)
                }
                None => (0, Value::Null),
            }
        } else {
            let method = Method::parse(rq["method"].as_str().unwrap_or("GET")).expect("known method");
            let mut req = Request::new(method, rq["path"].as_str().unwrap_or("/"));
            match &rq["body"] {
                Value::Null => {}
                Value::String(s) => {
                    let ct = rq["content_type"].as_str().unwrap_or("application/json");
                    req = req.with_body(ct, s.clone().into_bytes());
                }
                other => {
                    let ct = rq["content_type"].as_str().unwrap_or("application/json");
                    req = req.with_body(ct, other.to_string().into_bytes());
                }
            }
            match rq["auth"].as_str() {
                Some("none") => {}
                Some("wrong") => req = req.bearer("wrongKey"),
                _ => req = req.bearer("masterKey"),
            }
            let r = node.handle(req, now);
            last_task = r.body.get("taskUid").and_then(Value::as_u64);
            (r.status, r.body)
        };
        let want_status = e["response"]["status"].as_u64().unwrap_or(0) as u16;
        let want = norm(&e["response"]["body"]);
        let got = norm(&body);
        let matched = status == want_status && got == want;
        let detail = if matched {
            String::new()
        } else {
            format!(
                "{file}:{} `{name}`\n  want {want_status} {}\n  got  {status} {}",
                n + 1,
                truncate(&want.to_string()),
                truncate(&got.to_string())
            )
        };
        out.push(Outcome { name, matched, detail });
    }
    out
}

fn truncate(s: &str) -> String {
    let limit: usize = std::env::var("FIXTURE_WIDTH").ok().and_then(|w| w.parse().ok()).unwrap_or(600);
    if s.len() > limit {
        let mut end = limit;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}

#[test]
fn fixtures_replay_against_the_model() {
    let files = [
        ("v1.50.0-core.jsonl", include_str!("fixtures/v1.50.0-core.jsonl")),
        ("v1.50.0-ranking.jsonl", include_str!("fixtures/v1.50.0-ranking.jsonl")),
    ];
    let show = std::env::var("FIXTURE_SHOW").is_ok();
    let mut total = 0;
    let mut identical = 0;
    let mut problems = Vec::new();
    for (file, text) in files {
        for o in replay(file, text) {
            total += 1;
            identical += usize::from(o.matched);
            let allowed = ALLOWED_DIFFERENCES.iter().any(|(f, n, _)| *f == file && *n == o.name);
            if o.matched && allowed {
                problems.push(format!("{file} `{}` is allow-listed but now matches: remove it from ALLOWED_DIFFERENCES", o.name));
            }
            if !o.matched && !allowed {
                problems.push(o.detail.clone());
            }
            if show && !o.matched {
                eprintln!("{}", o.detail);
            }
        }
    }
    for (f, n, _) in ALLOWED_DIFFERENCES {
        assert!(
            files.iter().any(|(file, text)| file == f && text.contains(&format!("\"name\": \"{n}\""))),
            "allow-listed step {f} `{n}` does not exist"
        );
    }
    eprintln!("fixture replay: {identical}/{total} identical after normalisation");
    assert!(problems.is_empty(), "{} unexpected fixture result(s):\n{}", problems.len(), problems.join("\n"));
}
