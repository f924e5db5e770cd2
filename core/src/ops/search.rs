//! A search scattered over a covering set and merged exactly.
//!
//! The scatter itself is a [`CoverRead`] of the planned shard request (one request per covering node, the
//! node's restriction AND-ed into the filter); this module adds the search plan, the merge and the policy.
//!
//! States: `Scattering` (requests out, answers arriving) → `Done` (a reply exists). While scattering, a node
//! that fails (no answer, a 5xx, or a body that is not a search result) has its shards re-planned onto
//! another healthy owner — another replica of its group first, then the other groups — and a new request goes
//! out restricted to exactly those shards. A shard with no owner left is *unavailable*.
//!
//! Events: [`ScatterSearch::on_response`] (a parsed answer) or [`ScatterSearch::on_response_text`] (the answer's
//! text, merged without parsing hits whole), [`ScatterSearch::on_failure`]. Actions:
//! [`ScatterSearch::take_requests`] returns the requests created since the last call (the first call returns the
//! initial scatter). The reply is [`ScatterSearch::reply_text`] (JSON text, spliced from the nodes' hits when
//! they were given as text) or [`ScatterSearch::reply`] (parsed).
//!
//! Invariants:
//! - every shard is answered by exactly one node, or is unavailable: a retry only carries shards whose node
//!   failed, and a failed node's answer is never used, so no hit, facet count or total is counted twice;
//! - a client error from a node (4xx with a Meilisearch error, e.g. an invalid filter) ends the search with
//!   that error, as one node holding everything would answer;
//! - with unavailable shards, `scatter.unavailable_shard_policy` decides: `partial` merges what was answered
//!   and sets `X-Miroir-Degraded: shards=…`; `error` answers 503 `miroir_shard_unavailable`;
//! - answers given as text and as values give the same reply (text answers are merged by
//!   [`merge_search_text`], values by [`merge_search`]; a mix is merged as text);
//! - with [`ScatterSearch::with_displayed`], the reply's hits keep only the displayed fields, as
//!   [`crate::ops::settings::apply_displayed_to_hits`] keeps them.

use super::cover::{CoverOptions, CoverOutcome, CoverRead};
use super::{NodeRequest, Reply, RequestId, DEGRADED_HEADER};
use crate::config::UnavailableShardPolicy;
use crate::error::{join_u32, MeiliError};
use crate::routing::Placement;
use crate::search::{
    merge_search, merge_search_text, pinned_shards, plan_search, NodeAnswer, RawAnswer,
    SearchContext, SearchPlan,
};
use crate::topology::{GroupId, NodeId, ShardId};
use crate::Millis;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A search reply written as JSON text (see [`ScatterSearch::reply_text`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TextReply<'a> {
    /// The HTTP status.
    pub status: u16,
    /// The body, JSON text.
    pub body: Cow<'a, str>,
    /// Extra headers, e.g. `X-Miroir-Degraded`.
    pub headers: &'a [(String, String)],
}

/// How a search ended: a parsed reply, or a reply already written as JSON text.
#[derive(Debug, Clone)]
enum Done {
    Parsed(Reply),
    Text {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
}

/// One search in flight: a [`CoverRead`] of the planned shard request, merged once every shard answered.
#[derive(Debug, Clone)]
pub struct ScatterSearch {
    plan: SearchPlan,
    policy: UnavailableShardPolicy,
    read: CoverRead,
    /// Answers given as text, by request id (the cover read holds a placeholder for them).
    texts: BTreeMap<RequestId, RawAnswer>,
    /// The displayed attributes applied to the reply's hits (`None`: all).
    displayed: Option<Vec<String>>,
    done: Option<Done>,
    /// The parsed form of a text reply, made when [`ScatterSearch::reply`] is first asked.
    parsed: OnceLock<Reply>,
}

impl ScatterSearch {
    /// Plans the search `client` (the POST body) on index `index_uid`. `healthy` is asked once per node;
    /// `preferred_group` and `rotation` spread queries over groups and replicas.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index_uid: &str,
        client: &Map<String, Value>,
        ctx: &SearchContext,
        placement: &Placement,
        healthy: &dyn Fn(&NodeId) -> bool,
        preferred_group: GroupId,
        rotation: u64,
        policy: UnavailableShardPolicy,
    ) -> Result<Self, MeiliError> {
        Self::with_options(
            index_uid,
            client,
            ctx,
            placement,
            healthy,
            CoverOptions {
                preferred_group,
                rotation,
                ..CoverOptions::default()
            },
            policy,
            None,
        )
    }

    /// Plans the search `client` on index `index_uid` with the scatter `options` (replica ranking,
    /// hedging, scope). With `primary_key`, a filter pinning it (`id = x`, `id IN [...]`, AND-ed with
    /// anything) narrows the scope to the shards owning those ids (see
    /// [`crate::search::pinned_shards`]): the other shards cannot hold a matching document.
    #[allow(clippy::too_many_arguments)]
    pub fn with_options(
        index_uid: &str,
        client: &Map<String, Value>,
        ctx: &SearchContext,
        placement: &Placement,
        healthy: &dyn Fn(&NodeId) -> bool,
        mut options: CoverOptions,
        policy: UnavailableShardPolicy,
        primary_key: Option<&str>,
    ) -> Result<Self, MeiliError> {
        let plan = plan_search(client, ctx)?;
        if let Some(pinned) = primary_key
            .and_then(|pk| pinned_shards(plan.shard_request.get("filter"), pk, placement.shards()))
        {
            options.scope = Some(match options.scope.take() {
                None => pinned,
                Some(scope) => pinned.into_iter().filter(|s| scope.contains(s)).collect(),
            });
        }
        let read = CoverRead::with_options(
            format!("/indexes/{index_uid}/search"),
            plan.shard_request.clone(),
            placement,
            healthy,
            options,
        )
        .accepting(|body| body.get("hits").is_some_and(Value::is_array));
        let mut search = ScatterSearch {
            plan,
            policy,
            read,
            texts: BTreeMap::new(),
            displayed: None,
            done: None,
            parsed: OnceLock::new(),
        };
        search.settle();
        Ok(search)
    }

    /// Keeps only `displayed` fields in the reply's hits (the index's `displayedAttributes` as the proxy
    /// applies it; `None`: every field), as [`crate::ops::settings::apply_displayed_to_hits`] does. Set it
    /// before the last answer arrives.
    pub fn with_displayed(mut self, displayed: Option<Vec<String>>) -> Self {
        self.displayed = displayed;
        self
    }

    /// The requests created since the last call, sent at `now` (so they can be hedged): send them all.
    pub fn take_requests_at(&mut self, now: Millis) -> Vec<NodeRequest> {
        self.read.take_requests_at(now)
    }

    /// When the next hedge is due, if any (see [`CoverRead::poll_timeout`]).
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.done.is_some() {
            return None;
        }
        self.read.poll_timeout()
    }

    /// Sends the hedges due at `now` (see [`CoverRead::on_timeout`]).
    pub fn on_timeout(&mut self, now: Millis) {
        if self.done.is_none() {
            self.read.on_timeout(now);
        }
    }

    /// A shadow copy of this search for `node`, only to time it (see [`CoverRead::probe_request`]).
    pub fn probe_request(&self, node: &NodeId) -> Option<NodeRequest> {
        self.read.probe_request(node)
    }

    /// Hedges sent, and how many of them won.
    pub fn hedges(&self) -> (u32, u32) {
        self.read.hedges()
    }

    /// The shards this search reads (all of them unless narrowed by the primary key).
    pub fn scope(&self) -> Vec<ShardId> {
        self.read.scope()
    }

    /// The requests created since the last call: send them all.
    pub fn take_requests(&mut self) -> Vec<NodeRequest> {
        self.read.take_requests()
    }

    /// Feeds a node's HTTP answer to request `id`.
    pub fn on_response(&mut self, id: RequestId, status: u16, body: Value) {
        if self.done.is_none() {
            self.read.on_response(id, status, body);
            self.settle();
        }
    }

    /// Feeds a node's HTTP answer to request `id` as the text it sent. A 2xx search result is kept as text
    /// (its hits are located, never parsed whole, and spliced into the reply); a 2xx body that is not a
    /// search result is a failure, as with [`ScatterSearch::on_response`]; other statuses are parsed and
    /// judged as there (a body that is not JSON counts as `null`).
    pub fn on_response_text(&mut self, id: RequestId, status: u16, text: String) {
        if self.done.is_some() {
            return;
        }
        if (200..300).contains(&status) {
            let answer = RawAnswer::parse(id, text);
            if answer.is_search_result() {
                self.texts.insert(id, answer);
                // What the cover read judges: a search result; the text stands in for it at the merge.
                let mut placeholder = Map::new();
                placeholder.insert("hits".into(), Value::Array(Vec::new()));
                self.read
                    .on_response(id, status, Value::Object(placeholder));
            } else {
                self.read.on_response(id, status, Value::Null);
            }
        } else {
            let body = serde_json::from_str(&text).unwrap_or(Value::Null);
            self.read.on_response(id, status, body);
        }
        self.settle();
    }

    /// Request `id` could not be delivered, or timed out.
    pub fn on_failure(&mut self, id: RequestId) {
        if self.done.is_none() {
            self.read.on_failure(id);
            self.settle();
        }
    }

    /// Produces the reply once nothing is outstanding.
    fn settle(&mut self) {
        if self.done.is_some() {
            return;
        }
        let (answers, unavailable) = match self.read.outcome() {
            None => return,
            Some(CoverOutcome::ClientError(e)) => {
                self.done = Some(Done::Parsed(Reply::error(&e)));
                return;
            }
            Some(CoverOutcome::Answers {
                answers,
                unavailable,
            }) => (answers, unavailable),
        };
        if !unavailable.is_empty() && self.policy == UnavailableShardPolicy::Error {
            let e = MeiliError::shard_unavailable(&unavailable);
            self.done = Some(Done::Parsed(Reply::error(&e)));
            return;
        }
        let mut headers = Vec::new();
        if !unavailable.is_empty() {
            headers.push((
                DEGRADED_HEADER.to_string(),
                format!("shards={}", join_u32(&unavailable).replace(", ", ",")),
            ));
        }
        let displayed = self.displayed.as_deref();
        let done = if self.texts.is_empty() {
            let answers = answers
                .into_iter()
                .map(|a| NodeAnswer {
                    order: a.order,
                    body: a.body,
                })
                .collect();
            match merge_search(&self.plan, answers) {
                Ok(mut body) => {
                    crate::ops::settings::apply_displayed_to_hits(&mut body, displayed);
                    let mut r = Reply::json(200, body);
                    r.headers = headers;
                    Done::Parsed(r)
                }
                Err(e) => Done::Parsed(Reply::error(&e)),
            }
        } else {
            let answers = answers
                .into_iter()
                .map(|a| match self.texts.remove(&a.order) {
                    Some(text) => text,
                    None => RawAnswer::parse(a.order, a.body.to_string()),
                })
                .collect();
            match merge_search_text(&self.plan, answers, displayed) {
                Ok(body) => Done::Text {
                    status: 200,
                    body,
                    headers,
                },
                Err(e) => Done::Parsed(Reply::error(&e)),
            }
        };
        self.texts.clear();
        self.done = Some(done);
    }

    /// Whether the reply exists (every shard was answered or given up).
    pub fn is_done(&self) -> bool {
        self.done.is_some()
    }

    /// The client's reply, once every shard was answered or given up (a reply written as text is parsed
    /// the first time it is asked for; [`ScatterSearch::reply_text`] avoids that).
    pub fn reply(&self) -> Option<&Reply> {
        match self.done.as_ref()? {
            Done::Parsed(r) => Some(r),
            Done::Text {
                status,
                body,
                headers,
            } => Some(self.parsed.get_or_init(|| Reply {
                status: *status,
                body: serde_json::from_str(body).unwrap_or(Value::Null),
                headers: headers.clone(),
            })),
        }
    }

    /// The client's reply as its status, JSON text and extra headers, once every shard was answered or
    /// given up: the merged text itself when the answers came as text, else the parsed reply serialized.
    pub fn reply_text(&self) -> Option<TextReply<'_>> {
        Some(match self.done.as_ref()? {
            Done::Parsed(r) => TextReply {
                status: r.status,
                body: Cow::Owned(r.body.to_string()),
                headers: &r.headers,
            },
            Done::Text {
                status,
                body,
                headers,
            } => TextReply {
                status: *status,
                body: Cow::Borrowed(body.as_str()),
                headers,
            },
        })
    }

    /// The shards no healthy owner could serve.
    pub fn unavailable(&self) -> Vec<ShardId> {
        self.read.unavailable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn placement(nodes: usize, rf: u32, groups: u32, shards: u32) -> Placement {
        crate::ops::test_placement(nodes, rf, groups, shards)
    }

    fn client() -> Map<String, Value> {
        json!({"q": "star", "limit": 2})
            .as_object()
            .unwrap()
            .clone()
    }

    /// The shards a request's filter restricts it to, read back from the assignment we made.
    fn answer_for(search: &ScatterSearch, id: RequestId) -> Value {
        let hits: Vec<Value> = search
            .read
            .shards_of(id)
            .iter()
            .map(|s| json!({"id": format!("d{s}"), "_miroir_shard": s, "_rankingScoreDetails": {"words": {"order": 0, "matchingWords": 1, "maxMatchingWords": 1, "score": 1.0 - *s as f64 / 100.0}}}))
            .collect();
        json!({"hits": hits, "query": "star", "processingTimeMs": 1, "limit": 2, "offset": 0, "estimatedTotalHits": search.read.shards_of(id).len()})
    }

    fn run(search: &mut ScatterSearch, fail: &dyn Fn(&NodeId) -> bool) {
        loop {
            let reqs = search.take_requests();
            if reqs.is_empty() {
                break;
            }
            for r in reqs {
                if fail(&r.node) {
                    search.on_failure(r.id);
                } else {
                    let body = answer_for(search, r.id);
                    search.on_response(r.id, 200, body);
                }
            }
        }
    }

    #[test]
    fn every_shard_answered_once_and_merged() {
        let p = placement(3, 2, 1, 6);
        let mut s = ScatterSearch::new(
            "movies",
            &client(),
            &SearchContext::default(),
            &p,
            &|_| true,
            0,
            0,
            UnavailableShardPolicy::Partial,
        )
        .unwrap();
        let first = s.take_requests();
        let mut covered: Vec<ShardId> = first
            .iter()
            .flat_map(|r| s.read.shards_of(r.id).to_vec())
            .collect();
        covered.sort();
        assert_eq!(covered, (0..6).collect::<Vec<_>>());
        for r in &first {
            assert_eq!(r.path, "/indexes/movies/search");
            let body = r.body.as_ref().unwrap();
            assert_eq!(body["showRankingScoreDetails"], true);
        }
        for r in first {
            let b = answer_for(&s, r.id);
            s.on_response(r.id, 200, b);
        }
        let reply = s.reply().unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["estimatedTotalHits"], 6);
        assert_eq!(reply.body["hits"].as_array().unwrap().len(), 2);
        assert_eq!(reply.body["hits"][0]["id"], "d0");
        assert!(reply.body["hits"][0].get("_miroir_shard").is_none());
    }

    #[test]
    fn a_failed_node_is_replaced_by_another_replica() {
        let p = placement(3, 2, 1, 6);
        let mut s = ScatterSearch::new(
            "movies",
            &client(),
            &SearchContext::default(),
            &p,
            &|_| true,
            0,
            0,
            UnavailableShardPolicy::Error,
        )
        .unwrap();
        run(&mut s, &|n| n.as_str() == "n0");
        let reply = s.reply().unwrap();
        assert_eq!(
            reply.status, 200,
            "RF=2: every shard of n0 has another owner"
        );
        assert_eq!(
            reply.body["estimatedTotalHits"], 6,
            "no shard lost, none counted twice"
        );
        assert!(reply.headers.is_empty());
        assert!(s.unavailable().is_empty());
    }

    #[test]
    fn unavailable_shards_follow_the_policy() {
        let p = placement(3, 1, 1, 6);
        let lost: Vec<ShardId> = p.shards_held_by(&NodeId::from("n1"));
        let mut partial = ScatterSearch::new(
            "movies",
            &client(),
            &SearchContext::default(),
            &p,
            &|_| true,
            0,
            0,
            UnavailableShardPolicy::Partial,
        )
        .unwrap();
        run(&mut partial, &|n| n.as_str() == "n1");
        let r = partial.reply().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body["estimatedTotalHits"], 6 - lost.len());
        let expected = format!(
            "shards={}",
            lost.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(r.headers, vec![(DEGRADED_HEADER.to_string(), expected)]);
        assert_eq!(partial.unavailable(), lost);

        let mut strict = ScatterSearch::new(
            "movies",
            &client(),
            &SearchContext::default(),
            &p,
            &|n| n.as_str() != "n1",
            0,
            0,
            UnavailableShardPolicy::Error,
        )
        .unwrap();
        run(&mut strict, &|_| false);
        let r = strict.reply().unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.body["code"], "miroir_shard_unavailable");
    }

    #[test]
    fn node_client_errors_are_relayed_and_garbage_is_a_failure() {
        let p = placement(2, 2, 1, 4);
        let mut s = ScatterSearch::new(
            "movies",
            &client(),
            &SearchContext::default(),
            &p,
            &|_| true,
            0,
            0,
            UnavailableShardPolicy::Partial,
        )
        .unwrap();
        let reqs = s.take_requests();
        let err = json!({"message": "Attribute `x` is not filterable.", "code": "invalid_search_filter", "type": "invalid_request", "link": "https://docs.meilisearch.com/errors#invalid_search_filter"});
        s.on_response(reqs[0].id, 400, err.clone());
        let r = s.reply().unwrap();
        assert_eq!((r.status, r.body.clone()), (400, err));

        let mut g = ScatterSearch::new(
            "movies",
            &client(),
            &SearchContext::default(),
            &p,
            &|_| true,
            0,
            0,
            UnavailableShardPolicy::Partial,
        )
        .unwrap();
        let reqs = g.take_requests();
        g.on_response(reqs[0].id, 200, json!("not a search result"));
        assert!(
            g.reply().is_none(),
            "the garbage answer's shards are retried elsewhere"
        );
        assert!(!g.take_requests().is_empty());
    }

    #[test]
    fn invalid_client_search_is_refused_before_scattering() {
        let p = placement(2, 1, 1, 4);
        let bad = json!({"limit": -1}).as_object().unwrap().clone();
        let e = ScatterSearch::new(
            "movies",
            &bad,
            &SearchContext::default(),
            &p,
            &|_| true,
            0,
            0,
            UnavailableShardPolicy::Partial,
        )
        .unwrap_err();
        assert_eq!(e.code, "invalid_search_limit");
    }

    #[test]
    fn a_pinned_primary_key_reaches_only_its_shards() {
        let p = placement(4, 1, 1, 16);
        let body = json!({"q": "", "filter": "id IN [7, 9] AND year > 2000"})
            .as_object()
            .unwrap()
            .clone();
        let mut want = vec![p.shard_for_key("7"), p.shard_for_key("9")];
        want.sort_unstable();
        want.dedup();
        let mut s = ScatterSearch::with_options(
            "movies",
            &body,
            &SearchContext::default(),
            &p,
            &|_| true,
            CoverOptions::default(),
            UnavailableShardPolicy::Error,
            Some("id"),
        )
        .unwrap();
        assert_eq!(s.scope(), want);
        let reqs = s.take_requests_at(0);
        let mut asked: Vec<ShardId> = reqs
            .iter()
            .flat_map(|r| s.read.shards_of(r.id).to_vec())
            .collect();
        asked.sort_unstable();
        assert_eq!(asked, want);
        for r in reqs {
            let b = answer_for(&s, r.id);
            s.on_response(r.id, 200, b);
        }
        let reply = s.reply().unwrap();
        assert_eq!(reply.status, 200, "no shard is reported unavailable");
        assert!(reply.headers.is_empty());
        assert_eq!(reply.body["estimatedTotalHits"], want.len());
        assert_eq!(s.hedges(), (0, 0));
        assert_eq!(s.poll_timeout(), None);

        // OR with another field: every shard
        let body = json!({"filter": "id = 7 OR year > 2000"})
            .as_object()
            .unwrap()
            .clone();
        let s = ScatterSearch::with_options(
            "movies",
            &body,
            &SearchContext::default(),
            &p,
            &|_| true,
            CoverOptions {
                scope: Some(vec![1, 2]),
                ..CoverOptions::default()
            },
            UnavailableShardPolicy::Error,
            Some("id"),
        )
        .unwrap();
        assert_eq!(s.scope(), vec![1, 2], "a caller's scope is kept");
    }

    /// Runs a search feeding every answer as text (`text`) or parsed; returns the reply as text and parsed.
    fn run_as(
        text: bool,
        displayed: Option<Vec<String>>,
        fail: &str,
    ) -> (u16, Value, Vec<(String, String)>) {
        let p = placement(3, 1, 1, 6);
        let mut s = ScatterSearch::new(
            "movies",
            &client(),
            &SearchContext::default(),
            &p,
            &|_| true,
            0,
            0,
            UnavailableShardPolicy::Partial,
        )
        .unwrap()
        .with_displayed(displayed);
        loop {
            let reqs = s.take_requests();
            if reqs.is_empty() {
                break;
            }
            for r in reqs {
                if r.node.as_str() == fail {
                    s.on_failure(r.id);
                    continue;
                }
                let mut body = answer_for(&s, r.id);
                for h in body["hits"].as_array_mut().unwrap() {
                    h["title"] = json!("T");
                    h["_formatted"] = json!({"id": "x", "title": "t", "_miroir_shard": 1});
                }
                if text {
                    s.on_response_text(r.id, 200, body.to_string());
                } else {
                    s.on_response(r.id, 200, body);
                }
            }
        }
        assert!(s.is_done());
        let TextReply {
            status,
            body: text,
            headers,
        } = s.reply_text().unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let reply = s.reply().unwrap();
        assert_eq!(
            (reply.status, &reply.body),
            (status, &parsed),
            "reply and reply_text agree"
        );
        (status, parsed, headers.to_vec())
    }

    #[test]
    fn text_answers_give_the_same_reply_as_parsed_ones() {
        for displayed in [None, Some(vec!["id".to_string()])] {
            for fail in ["none", "n1"] {
                let parsed = run_as(false, displayed.clone(), fail);
                let text = run_as(true, displayed.clone(), fail);
                assert_eq!(parsed, text);
                let hits = text.1["hits"].as_array().unwrap();
                assert!(!hits.is_empty());
                for h in hits {
                    assert!(h.get("_miroir_shard").is_none());
                    assert!(h["_formatted"].get("_miroir_shard").is_none());
                    assert_eq!(h.get("title").is_some(), displayed.is_none());
                }
                assert_eq!(text.2.is_empty(), fail == "none");
            }
        }
    }

    #[test]
    fn text_garbage_is_a_failure_and_text_errors_are_relayed() {
        let p = placement(2, 2, 1, 4);
        let new = || {
            ScatterSearch::new(
                "movies",
                &client(),
                &SearchContext::default(),
                &p,
                &|_| true,
                0,
                0,
                UnavailableShardPolicy::Partial,
            )
            .unwrap()
        };
        for garbage in ["not json", "[1]", "{\"nohits\": 1}", "{\"hits\": 3}"] {
            let mut g = new();
            let reqs = g.take_requests();
            g.on_response_text(reqs[0].id, 200, garbage.to_string());
            assert!(!g.is_done(), "{garbage}: retried elsewhere");
            assert!(!g.take_requests().is_empty());
        }
        let mut s = new();
        let reqs = s.take_requests();
        let err = json!({"message": "Attribute `x` is not filterable.", "code": "invalid_search_filter", "type": "invalid_request", "link": "https://docs.meilisearch.com/errors#invalid_search_filter"});
        s.on_response_text(reqs[0].id, 400, err.to_string());
        let reply = s.reply_text().unwrap();
        assert_eq!(reply.status, 400);
        assert_eq!(serde_json::from_str::<Value>(&reply.body).unwrap(), err);
        // a hit that is not an object: the merge reports the node
        let mut s = new();
        for r in s.take_requests() {
            s.on_response_text(
                r.id,
                200,
                "{\"hits\": [1], \"estimatedTotalHits\": 1}".into(),
            );
        }
        let reply = s.reply().unwrap();
        assert_eq!(reply.status, 502);
        assert_eq!(reply.body["code"], "miroir_bad_node_response");
        // answers after the reply are ignored
        s.on_response_text(0, 200, "{}".into());
        assert_eq!(s.reply().unwrap().status, 502);
    }
}
