//! The documents pager against fake Meilisearch nodes that answer from their own data (facet counts of
//! `_miroir_shard` for the counting search, filter + offset/limit in internal order for documents fetch),
//! checked against an oracle: the global order (shard ascending, then insertion order inside the shard).

use miroir_core::pager::{CoverEntry, DocumentsPager, DocumentsQuery, PagerRequest, Step};
use miroir_core::topology::NodeId;
use miroir_core::MeiliError;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

// ---------------------------------------------------------------------------------------------------------
// A tiny filter language, enough for the restrictions Miroir writes and the client filters used here.
// ---------------------------------------------------------------------------------------------------------

fn tokenize(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() || matches!(c, '[' | ']' | ',' | '(' | ')' | '=' | '>' | '<' | '!') {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if c == '!' && chars.get(i + 1) == Some(&'=') {
                out.push("!=".into());
                i += 1;
            } else if !c.is_whitespace() {
                out.push(c.to_string());
            }
        } else {
            cur.push(c);
        }
        i += 1;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

struct Parser<'a> {
    toks: &'a [String],
    pos: usize,
    doc: &'a Map<String, Value>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.toks.get(self.pos).map(String::as_str)
    }
    fn next(&mut self) -> Result<String, String> {
        let t = self.toks.get(self.pos).cloned().ok_or("unexpected end")?;
        self.pos += 1;
        Ok(t)
    }
    fn expr(&mut self) -> Result<bool, String> {
        let mut v = self.and()?;
        while self.peek() == Some("OR") {
            self.pos += 1;
            let r = self.and()?;
            v = v || r;
        }
        Ok(v)
    }
    fn and(&mut self) -> Result<bool, String> {
        let mut v = self.unary()?;
        while self.peek() == Some("AND") {
            self.pos += 1;
            let r = self.unary()?;
            v = v && r;
        }
        Ok(v)
    }
    fn unary(&mut self) -> Result<bool, String> {
        match self.peek() {
            Some("NOT") => {
                self.pos += 1;
                Ok(!self.unary()?)
            }
            Some("(") => {
                self.pos += 1;
                let v = self.expr()?;
                if self.next()? != ")" {
                    return Err("expected )".into());
                }
                Ok(v)
            }
            _ => self.cond(),
        }
    }
    fn matches(&self, field: &str, lit: &str) -> bool {
        match self.doc.get(field) {
            Some(Value::Number(n)) => lit.parse::<f64>().ok() == n.as_f64(),
            Some(Value::String(s)) => s == lit,
            _ => false,
        }
    }
    fn num(&self, field: &str) -> Option<f64> {
        self.doc.get(field).and_then(Value::as_f64)
    }
    fn cond(&mut self) -> Result<bool, String> {
        let field = self.next()?;
        if matches!(field.as_str(), "=" | "!=" | "[" | "]" | "," | ">" | "<") {
            return Err(format!("unexpected `{field}`"));
        }
        let op = self.next()?;
        match op.as_str() {
            "=" => {
                let v = self.next()?;
                Ok(self.matches(&field, &v))
            }
            "!=" => {
                let v = self.next()?;
                Ok(!self.matches(&field, &v))
            }
            ">" | "<" => {
                let v: f64 = self.next()?.parse().map_err(|_| "not a number")?;
                Ok(self
                    .num(&field)
                    .is_some_and(|x| if op == ">" { x > v } else { x < v }))
            }
            "EXISTS" => Ok(self.doc.contains_key(&field)),
            "IN" => {
                if self.next()? != "[" {
                    return Err("expected [".into());
                }
                let mut any = false;
                loop {
                    let v = self.next()?;
                    any |= self.matches(&field, &v);
                    match self.next()?.as_str() {
                        "," => continue,
                        "]" => break,
                        _ => return Err("expected , or ]".into()),
                    }
                }
                Ok(any)
            }
            low => {
                let low: f64 = low
                    .parse()
                    .map_err(|_| format!("unknown operator `{low}`"))?;
                if self.next()? != "TO" {
                    return Err("expected TO".into());
                }
                let high: f64 = self.next()?.parse().map_err(|_| "not a number")?;
                Ok(self.num(&field).is_some_and(|x| low <= x && x <= high))
            }
        }
    }
}

fn eval_str(expr: &str, doc: &Map<String, Value>) -> Result<bool, String> {
    let toks = tokenize(expr);
    if toks.is_empty() {
        return Ok(true);
    }
    let mut p = Parser {
        toks: &toks,
        pos: 0,
        doc,
    };
    let v = p.expr()?;
    if p.pos != toks.len() {
        return Err(format!("unexpected `{}`", toks[p.pos]));
    }
    Ok(v)
}

/// Meilisearch's filter forms: a string, or an array AND-ing strings and arrays of OR-ed strings.
fn eval_filter(filter: Option<&Value>, doc: &Map<String, Value>) -> Result<bool, String> {
    match filter {
        None | Some(Value::Null) => Ok(true),
        Some(Value::String(s)) => eval_str(s, doc),
        Some(Value::Array(items)) => {
            let mut all = true;
            for item in items {
                let v = match item {
                    Value::String(s) => eval_str(s, doc)?,
                    Value::Array(ors) => {
                        let mut any = false;
                        for o in ors {
                            any |= eval_str(o.as_str().ok_or("nested non-string")?, doc)?;
                        }
                        any
                    }
                    _ => return Err("bad array element".into()),
                };
                all &= v;
            }
            Ok(all)
        }
        Some(other) => Err(format!(
            "Invalid syntax for the filter parameter: `expected String, Array, found: {other}`."
        )),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Fake nodes and the oracle.
// ---------------------------------------------------------------------------------------------------------

fn err_body(code: &str, message: &str) -> Value {
    MeiliError::invalid(400, code, message).to_json()
}

#[derive(Debug, Clone)]
struct Node {
    name: String,
    held: Vec<u32>,
    /// Documents in the node's internal order.
    docs: Vec<Map<String, Value>>,
}

#[derive(Debug, Clone)]
struct Cluster {
    index: String,
    shards: u32,
    nodes: Vec<Node>,
    /// Every document in insertion order.
    docs: Vec<Map<String, Value>>,
    /// Per shard, the nodes holding it.
    replicas: Vec<Vec<usize>>,
}

fn doc_shard(doc: &Map<String, Value>) -> u32 {
    doc["_miroir_shard"].as_u64().unwrap() as u32
}

fn id_str(doc: &Map<String, Value>) -> String {
    match &doc["id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Cluster {
    /// `docs[i] = (shard, color, rank, numeric id?)`; `replicas[s]` = node indices holding shard s.
    fn build(
        shards: u32,
        n_nodes: usize,
        docs: &[(u32, u8, u8, bool)],
        replicas: Vec<Vec<usize>>,
    ) -> Self {
        let colors = ["red", "blue", "green"];
        let docs: Vec<Map<String, Value>> = docs
            .iter()
            .enumerate()
            .map(|(i, &(shard, color, rank, numeric))| {
                let mut m = Map::new();
                m.insert(
                    "id".into(),
                    if numeric {
                        json!(i)
                    } else {
                        json!(format!("d{i}"))
                    },
                );
                m.insert("_miroir_shard".into(), json!(shard));
                m.insert("color".into(), json!(colors[color as usize % 3]));
                m.insert("rank".into(), json!(rank));
                if rank % 4 == 0 {
                    m.insert("_miroir_extra".into(), json!("internal"));
                }
                m
            })
            .collect();
        let nodes = (0..n_nodes)
            .map(|n| {
                let held: Vec<u32> = (0..shards)
                    .filter(|s| replicas[*s as usize].contains(&n))
                    .collect();
                Node {
                    name: format!("n{n}"),
                    docs: docs
                        .iter()
                        .filter(|d| held.contains(&doc_shard(d)))
                        .cloned()
                        .collect(),
                    held,
                }
            })
            .collect();
        Cluster {
            index: "movies".into(),
            shards,
            nodes,
            docs,
            replicas,
        }
    }

    /// A covering set choosing, for shard s, replica `choice[s] % replicas`.
    fn cover(&self, choice: &[usize]) -> Vec<CoverEntry> {
        let mut entries: Vec<CoverEntry> = Vec::new();
        for s in 0..self.shards {
            let reps = &self.replicas[s as usize];
            let n = reps[choice.get(s as usize).copied().unwrap_or(0) % reps.len()];
            let node = &self.nodes[n];
            match entries.iter_mut().find(|e| e.node.as_str() == node.name) {
                Some(e) => e.assigned.push(s),
                None => entries.push(CoverEntry::new(
                    node.name.as_str(),
                    vec![s],
                    node.held.clone(),
                )),
            }
        }
        entries
    }

    fn node(&self, name: &NodeId) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name.as_str())
            .expect("known node")
    }

    fn shard_of(&self, id: &str) -> u32 {
        self.docs
            .iter()
            .find(|d| id_str(d) == id)
            .map(doc_shard)
            // Unknown ids still live somewhere: hash them onto a shard.
            .unwrap_or_else(|| id.bytes().map(u32::from).sum::<u32>() % self.shards.max(1))
    }

    /// Answers like Meilisearch would.
    fn answer(&self, req: &PagerRequest) -> (u16, Value) {
        assert_eq!(req.method, "POST");
        let node = self.node(&req.node);
        let body = req.body.as_object().expect("object body");
        let prefix = format!("/indexes/{}/", self.index);
        let Some(route) = req.path.strip_prefix(&prefix) else {
            let uid = req.path.split('/').nth(2).unwrap_or("");
            return (
                404,
                MeiliError::invalid(404, "index_not_found", format!("Index `{uid}` not found."))
                    .to_json(),
            );
        };
        match route {
            "search" => {
                for k in body.keys() {
                    assert!(
                        ["q", "limit", "filter", "facets"].contains(&k.as_str()),
                        "search key {k}"
                    );
                }
                assert_eq!(body["q"], json!(""));
                assert_eq!(body["limit"], json!(0));
                assert_eq!(body["facets"], json!(["_miroir_shard"]));
                let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
                let mut n = 0;
                for d in &node.docs {
                    match eval_filter(body.get("filter"), d) {
                        Ok(true) => {
                            n += 1;
                            *counts.entry(doc_shard(d).to_string()).or_default() += 1;
                        }
                        Ok(false) => {}
                        Err(m) => return (400, err_body("invalid_search_filter", &m)),
                    }
                }
                (
                    200,
                    json!({"hits": [], "query": "", "processingTimeMs": 0, "limit": 0, "offset": 0,
                           "estimatedTotalHits": n.min(1000), "facetDistribution": {"_miroir_shard": counts},
                           "facetStats": {}}),
                )
            }
            "documents/fetch" => {
                for k in body.keys() {
                    assert!(
                        [
                            "fields",
                            "retrieveVectors",
                            "ids",
                            "filter",
                            "offset",
                            "limit"
                        ]
                        .contains(&k.as_str()),
                        "fetch key {k}"
                    );
                }
                let offset = body["offset"].as_u64().unwrap() as usize;
                let limit = body["limit"].as_u64().unwrap() as usize;
                let ids: Option<Vec<String>> = body.get("ids").map(|v| {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|i| i.as_str().unwrap().to_string())
                        .collect()
                });
                let mut matched = Vec::new();
                for d in &node.docs {
                    if let Some(ids) = &ids {
                        if !ids.contains(&id_str(d)) {
                            continue;
                        }
                    }
                    match eval_filter(body.get("filter"), d) {
                        Ok(true) => matched.push(d.clone()),
                        Ok(false) => {}
                        Err(m) => return (400, err_body("invalid_document_filter", &m)),
                    }
                }
                let fields: Option<Vec<String>> = body.get("fields").map(|f| {
                    f.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_str().unwrap().to_string())
                        .collect()
                });
                let results: Vec<Value> = matched
                    .iter()
                    .skip(offset)
                    .take(limit)
                    .map(|d| {
                        let m: Map<String, Value> = d
                            .iter()
                            .filter(|(k, _)| fields.as_ref().is_none_or(|f| f.contains(k)))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        Value::Object(m)
                    })
                    .collect();
                (
                    200,
                    json!({"results": results, "offset": offset, "limit": limit, "total": matched.len()}),
                )
            }
            other => panic!("unexpected route {other}"),
        }
    }

    /// The oracle: matching documents in the global order, client-facing.
    fn oracle(&self, query: &DocumentsQuery) -> Vec<Value> {
        let mut docs: Vec<&Map<String, Value>> = self
            .docs
            .iter()
            .filter(|d| eval_filter(query.filter.as_ref(), d).unwrap())
            .filter(|d| {
                query
                    .ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&id_str(d)))
            })
            .collect();
        docs.sort_by_key(|d| doc_shard(d));
        docs.into_iter()
            .map(|d| {
                Value::Object(
                    d.iter()
                        .filter(|(k, _)| !k.starts_with("_miroir_"))
                        .filter(|(k, _)| query.fields.as_ref().is_none_or(|f| f.contains(k)))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
            })
            .collect()
    }

    fn pager(&self, query: DocumentsQuery, choice: &[usize]) -> DocumentsPager {
        DocumentsPager::new(&self.index, query, self.cover(choice), self.shards, &|id| {
            self.shard_of(id)
        })
    }

    /// Drives a pager to its end, answering each batch in reverse order; returns the result and every request.
    fn run(&self, pager: &mut DocumentsPager) -> (Result<Value, MeiliError>, Vec<PagerRequest>) {
        let mut sent = Vec::new();
        loop {
            match pager.poll() {
                Step::Send(reqs) => {
                    for r in reqs.iter().rev() {
                        let (status, body) = self.answer(r);
                        pager.on_response(r.id, status, &body);
                    }
                    sent.extend(reqs);
                }
                Step::Wait => panic!("waiting with every request answered"),
                Step::Failed { .. } => panic!("no failure injected"),
                Step::Done(v) => return (Ok(v), sent),
                Step::Error(e) => return (Err(e), sent),
            }
        }
    }
}

fn query(offset: usize, limit: usize, filter: Option<Value>) -> DocumentsQuery {
    DocumentsQuery {
        offset,
        limit,
        filter,
        ..DocumentsQuery::new()
    }
}

/// A small fixed cluster: 4 shards on 3 nodes, shard s on nodes s%3 and (s+1)%3.
fn small() -> Cluster {
    let docs: Vec<(u32, u8, u8, bool)> = (0..30u32)
        .map(|i| ((i * 7) % 4, (i % 3) as u8, (i % 10) as u8, i % 2 == 0))
        .collect();
    let replicas = (0..4).map(|s| vec![s % 3, (s + 1) % 3]).collect();
    Cluster::build(4, 3, &docs, replicas)
}

// ---------------------------------------------------------------------------------------------------------
// Unit tests
// ---------------------------------------------------------------------------------------------------------

#[test]
fn pages_follow_the_global_order() {
    let c = small();
    let all = c.oracle(&query(0, 1000, None));
    assert_eq!(all.len(), 30);
    for (offset, limit) in [
        (0, 20),
        (5, 7),
        (7, 1),
        (29, 5),
        (0, 30),
        (10, 0),
        (30, 3),
        (100, 2),
    ] {
        let (got, _) = c.run(&mut c.pager(query(offset, limit, None), &[0, 1, 0, 1]));
        let got = got.unwrap();
        let want: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
        assert_eq!(
            got,
            json!({"results": want, "offset": offset, "limit": limit, "total": 30})
        );
    }
}

#[test]
fn request_shapes() {
    let c = small();
    // Node n0 holds shards 0, 2, 3; n1 holds 0, 1, 3; n2 holds 1, 2.
    let mut p = c.pager(query(0, 20, Some(json!("color = red"))), &[0, 0, 0, 0]);
    let Step::Send(reqs) = p.poll() else { panic!() };
    // Cover: shard 0 → n0, 1 → n1, 2 → n2, 3 → n0.
    let nodes: Vec<&str> = reqs.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(nodes, ["n0", "n1", "n2"]);
    assert_eq!(reqs[0].path, "/indexes/movies/search");
    assert_eq!(
        reqs[0].body,
        json!({"q": "", "limit": 0, "filter": ["color = red", "_miroir_shard != 2"], "facets": ["_miroir_shard"]})
    );
    assert_eq!(
        reqs[1].body["filter"],
        json!(["color = red", "_miroir_shard = 1"])
    );
    assert_eq!(
        reqs[2].body["filter"],
        json!(["color = red", "_miroir_shard = 2"])
    );
    assert_eq!(p.poll(), Step::Wait);
    for r in &reqs {
        let (s, b) = c.answer(r);
        p.on_response(r.id, s, &b);
    }
    let Step::Send(fetches) = p.poll() else {
        panic!()
    };
    for f in &fetches {
        assert_eq!(f.path, "/indexes/movies/documents/fetch");
        assert_eq!(f.method, "POST");
        assert!(f.body["filter"][1]
            .as_str()
            .unwrap()
            .starts_with("_miroir_shard"));
        assert_eq!(f.body["filter"][0], json!("color = red"));
    }
}

#[test]
fn client_filter_forms_are_combined() {
    let c = small();
    let all_red: Vec<Value> = c.oracle(&query(0, 1000, Some(json!("color = red"))));
    for filter in [
        json!("color = red"),
        json!(["color = red"]),
        json!([["color = red", "color = nothing"]]),
        json!(["rank > -1", ["color = red"]]),
    ] {
        let (got, reqs) = c.run(&mut c.pager(query(2, 5, Some(filter.clone())), &[1, 1, 1, 1]));
        let got = got.unwrap();
        assert_eq!(got["results"], json!(all_red[2..7]));
        assert_eq!(got["total"], json!(all_red.len()));
        for r in &reqs {
            // The client's filter is always the first part(s), unchanged.
            match &filter {
                Value::String(s) => assert_eq!(r.body["filter"][0], json!(s)),
                Value::Array(items) => {
                    assert_eq!(
                        &r.body["filter"].as_array().unwrap()[..items.len()],
                        &items[..]
                    )
                }
                _ => unreachable!(),
            }
        }
    }
    // Blank and null filters are no filter at all.
    for filter in [json!(""), json!("   "), Value::Null] {
        let (got, _) = c.run(&mut c.pager(query(0, 3, Some(filter)), &[0, 0, 0, 0]));
        assert_eq!(got.unwrap()["total"], json!(30));
    }
}

#[test]
fn node_holding_exactly_its_shards_gets_no_restriction() {
    let docs: Vec<(u32, u8, u8, bool)> = (0..10u32).map(|i| (i % 2, 0, 1, true)).collect();
    let c = Cluster::build(2, 2, &docs, vec![vec![0], vec![1]]);
    let (got, reqs) = c.run(&mut c.pager(query(3, 4, None), &[0, 0]));
    for r in &reqs {
        assert!(r.body.get("filter").is_none(), "{}", r.body);
    }
    assert_eq!(
        got.unwrap()["results"],
        json!(c.oracle(&query(0, 100, None))[3..7])
    );
}

#[test]
fn limit_zero_and_offset_past_the_end_send_no_fetch() {
    let c = small();
    for (offset, limit) in [(0, 0), (30, 10), (1000, 1)] {
        let (got, reqs) = c.run(&mut c.pager(query(offset, limit, None), &[0, 0, 0, 0]));
        assert!(reqs.iter().all(|r| r.path.ends_with("/search")));
        assert_eq!(
            got.unwrap(),
            json!({"results": [], "offset": offset, "limit": limit, "total": 30})
        );
    }
}

#[test]
fn only_intersecting_shards_are_fetched_with_local_windows() {
    let c = small();
    let (_, reqs) = c.run(&mut c.pager(query(0, 1000, None), &[0, 0, 0, 0]));
    let fetches: Vec<&PagerRequest> = reqs.iter().filter(|r| r.path.ends_with("fetch")).collect();
    assert_eq!(fetches.len(), 4);
    let counts: Vec<usize> = (0..4)
        .map(|s| c.docs.iter().filter(|d| doc_shard(d) == s).count())
        .collect();
    // A window inside shard 1 only.
    let start = counts[0] + 1;
    let (_, reqs) = c.run(&mut c.pager(query(start, 2, None), &[0, 0, 0, 0]));
    let fetches: Vec<&PagerRequest> = reqs.iter().filter(|r| r.path.ends_with("fetch")).collect();
    assert_eq!(fetches.len(), 1);
    assert_eq!(fetches[0].body["offset"], json!(1));
    assert_eq!(fetches[0].body["limit"], json!(2));
}

#[test]
fn reserved_fields_are_stripped_and_order_kept() {
    let docs = vec![(0u32, 0u8, 4u8, true)];
    let c = Cluster::build(1, 1, &docs, vec![vec![0]]);
    let (got, _) = c.run(&mut c.pager(query(0, 20, None), &[0]));
    let got = got.unwrap();
    let doc = got["results"][0].as_object().unwrap();
    let keys: Vec<&str> = doc.keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "color", "rank"]);
}

#[test]
fn fields_and_vectors_are_forwarded() {
    let c = small();
    let q = DocumentsQuery {
        fields: Some(vec!["rank".into(), "id".into()]),
        retrieve_vectors: true,
        ..query(0, 5, None)
    };
    let (got, reqs) = c.run(&mut c.pager(q.clone(), &[0, 0, 0, 0]));
    for r in reqs.iter().filter(|r| r.path.ends_with("fetch")) {
        assert_eq!(r.body["fields"], json!(["rank", "id"]));
        assert_eq!(r.body["retrieveVectors"], json!(true));
    }
    assert_eq!(got.unwrap()["results"], json!(c.oracle(&q)[..5]));
}

#[test]
fn filter_errors_become_document_filter_errors() {
    let c = small();
    let (got, reqs) = c.run(&mut c.pager(query(0, 20, Some(json!("color = "))), &[0, 0, 0, 0]));
    let e = got.unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.code, "invalid_document_filter");
    assert_eq!(e.message, "unexpected end");
    assert!(e.to_json()["link"]
        .as_str()
        .unwrap()
        .ends_with("#invalid_document_filter"));
    assert!(reqs.iter().all(|r| r.path.ends_with("/search")));
    let (got, _) = c.run(&mut c.pager(query(0, 20, Some(json!(true))), &[0, 0, 0, 0]));
    let e = got.unwrap_err();
    assert_eq!(e.code, "invalid_document_filter");
    assert_eq!(
        e.message,
        "Invalid syntax for the filter parameter: `expected String, Array, found: true`."
    );
}

#[test]
fn node_errors_are_relayed() {
    let c = small();
    let cover = c.cover(&[0, 0, 0, 0]);
    let mut p = DocumentsPager::new("nope", query(0, 20, None), cover, 4, &|_| 0);
    let (got, _) = c.run(&mut p);
    let e = got.unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (404, "index_not_found"));
    assert_eq!(e.message, "Index `nope` not found.");
}

fn answer_all_with(p: &mut DocumentsPager, body: Value, status: u16) -> Step {
    let Step::Send(reqs) = p.poll() else {
        panic!("expected requests")
    };
    for r in &reqs {
        p.on_response(r.id, status, &body);
    }
    p.poll()
}

fn one_shard() -> Cluster {
    let docs: Vec<(u32, u8, u8, bool)> = (0..5).map(|i| (0, 0, i as u8, true)).collect();
    Cluster::build(1, 1, &docs, vec![vec![0]])
}

#[test]
fn malformed_count_answers_are_bad_node_responses() {
    let c = one_shard();
    for body in [
        json!({"facetDistribution": {"_miroir_shard": {"0": 5}}}),
        json!({"estimatedTotalHits": 5}),
        json!({"estimatedTotalHits": 5, "facetDistribution": {"_miroir_shard": [5]}}),
        json!({"estimatedTotalHits": 5, "facetDistribution": {"_miroir_shard": {"0": "5"}}}),
        json!({"estimatedTotalHits": 5, "facetDistribution": {"_miroir_shard": {"7": 5}}}),
        json!({"estimatedTotalHits": 5, "facetDistribution": {"_miroir_shard": {"x": 5}}}),
        json!({"estimatedTotalHits": 5, "facetDistribution": {"_miroir_shard": {"0": 4}}}),
        json!({"estimatedTotalHits": 5, "facetDistribution": {}}),
        json!([]),
        json!(null),
    ] {
        let mut p = c.pager(query(0, 20, None), &[0]);
        let step = answer_all_with(&mut p, body.clone(), 200);
        let Step::Error(e) = step else {
            panic!("{body}: {step:?}")
        };
        assert_eq!(
            (e.status, e.code.as_str()),
            (502, "miroir_bad_node_response"),
            "{body}"
        );
        assert!(e.message.contains("`n0`"));
    }
    // A non-2xx answer without an error body.
    let mut p = c.pager(query(0, 20, None), &[0]);
    let Step::Error(e) = answer_all_with(&mut p, json!({"oops": 1}), 500) else {
        panic!()
    };
    assert_eq!(e.code, "miroir_bad_node_response");
    assert!(e.message.contains("status 500"));
}

#[test]
fn counts_may_exceed_capped_hits_and_float_keys_are_read() {
    let c = one_shard();
    let mut p = c.pager(query(0, 0, None), &[0]);
    let step = answer_all_with(
        &mut p,
        json!({"estimatedTotalHits": 1000, "facetDistribution": {"_miroir_shard": {"0.0": 4000}}}),
        200,
    );
    assert_eq!(
        step,
        Step::Done(json!({"results": [], "offset": 0, "limit": 0, "total": 4000}))
    );
}

#[test]
fn absurd_counts_do_not_overflow() {
    let c = small();
    let mut p = c.pager(query(usize::MAX, usize::MAX, None), &[0, 0, 0, 0]);
    let Step::Send(reqs) = p.poll() else { panic!() };
    for r in &reqs {
        // Every node claims u64::MAX documents for each shard it serves.
        let shards: Vec<u32> = match r.node.as_str() {
            "n0" => vec![0, 3],
            "n1" => vec![1],
            _ => vec![2],
        };
        let dist: Map<String, Value> = shards
            .iter()
            .map(|s| (s.to_string(), json!(u64::MAX)))
            .collect();
        p.on_response(
            r.id,
            200,
            &json!({"estimatedTotalHits": 1000, "facetDistribution": {"_miroir_shard": dist}}),
        );
    }
    let step = p.poll();
    match step {
        Step::Send(fetches) => assert!(!fetches.is_empty()),
        Step::Done(v) => assert_eq!(v["total"], json!(u64::MAX)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_fetch_answers_are_bad_node_responses() {
    let c = one_shard();
    for body in [
        json!({"total": 5}),
        json!({"results": {}}),
        json!({"results": [1, 2]}),
        json!({"results": [{}, {}, {}, {}]}),
    ] {
        let mut p = c.pager(query(0, 3, None), &[0]);
        let Step::Send(reqs) = p.poll() else { panic!() };
        let (s, b) = c.answer(&reqs[0]);
        p.on_response(reqs[0].id, s, &b);
        let step = answer_all_with(&mut p, body.clone(), 200);
        let Step::Error(e) = step else {
            panic!("{body}: {step:?}")
        };
        assert_eq!(e.code, "miroir_bad_node_response", "{body}");
    }
}

#[test]
fn earliest_error_wins_whatever_the_answer_order() {
    let c = small();
    for reverse in [false, true] {
        let mut p = c.pager(query(0, 20, None), &[0, 0, 0, 0]);
        let Step::Send(mut reqs) = p.poll() else {
            panic!()
        };
        if reverse {
            reqs.reverse();
        }
        for r in &reqs {
            let body = MeiliError::invalid(400, format!("code_{}", r.id), "m").to_json();
            p.on_response(r.id, 400, &body);
        }
        let Step::Error(e) = p.poll() else { panic!() };
        assert_eq!(e.code, "code_0");
    }
}

#[test]
fn errors_wait_for_the_phase_to_settle() {
    let c = small();
    let mut p = c.pager(query(0, 20, None), &[0, 0, 0, 0]);
    let Step::Send(reqs) = p.poll() else { panic!() };
    p.on_response(
        reqs[1].id,
        404,
        &MeiliError::invalid(404, "index_not_found", "x").to_json(),
    );
    assert_eq!(p.poll(), Step::Wait);
    for r in [&reqs[0], &reqs[2]] {
        let (s, b) = c.answer(r);
        p.on_response(r.id, s, &b);
    }
    assert!(matches!(p.poll(), Step::Error(e) if e.code == "index_not_found"));
}

#[test]
fn stray_and_duplicate_answers_are_ignored() {
    let c = small();
    let mut p = c.pager(query(0, 50, None), &[0, 0, 0, 0]);
    let Step::Send(reqs) = p.poll() else { panic!() };
    p.on_response(999, 200, &json!({}));
    p.on_failure(999);
    for r in &reqs {
        let (s, b) = c.answer(r);
        p.on_response(r.id, s, &b);
        p.on_response(r.id, 500, &json!(null));
        p.on_failure(r.id);
    }
    let (got, _) = c.run(&mut p);
    let got = got.unwrap();
    assert_eq!(got["total"], json!(30));
    // Terminal steps repeat.
    assert_eq!(p.poll(), Step::Done(got));
}

#[test]
fn failures_are_reported_then_retried_on_another_replica() {
    let c = small();
    let want = c.oracle(&query(0, 1000, None));
    for fail_phase in ["search", "fetch"] {
        let mut p = c.pager(query(3, 20, None), &[0, 0, 0, 0]);
        let mut failed_once = false;
        let result = loop {
            match p.poll() {
                Step::Send(reqs) => {
                    for r in &reqs {
                        if !failed_once && r.node.as_str() == "n0" && r.path.ends_with(fail_phase) {
                            failed_once = true;
                            p.on_failure(r.id);
                        } else {
                            let (s, b) = c.answer(r);
                            p.on_response(r.id, s, &b);
                        }
                    }
                }
                Step::Failed {
                    request,
                    node,
                    shards,
                } => {
                    assert_eq!(node.as_str(), "n0");
                    assert!(!shards.is_empty());
                    // n0 serves shards 0 and 3; n1 holds both, n2 holds neither.
                    let n2 = c.node(&NodeId::new("n2"));
                    assert_eq!(
                        p.retry(request, NodeId::new("n2"), n2.held.clone())
                            .unwrap_err()
                            .status,
                        500
                    );
                    let n1 = c.node(&NodeId::new("n1"));
                    p.retry(request, NodeId::new("n1"), n1.held.clone())
                        .unwrap();
                    // A request already retried cannot be retried nor skipped again.
                    assert!(p
                        .retry(request, NodeId::new("n1"), vec![0, 1, 2, 3])
                        .is_err());
                    assert!(p.skip(request).is_err());
                }
                Step::Wait => panic!("stuck"),
                Step::Done(v) => break v,
                Step::Error(e) => panic!("{e}"),
            }
        };
        assert!(failed_once);
        assert!(p.unavailable_shards().is_empty());
        assert_eq!(result["results"], json!(want[3..23]));
        assert_eq!(result["total"], json!(30));
    }
}

#[test]
fn skip_marks_shards_unavailable() {
    let c = small();
    let mut p = c.pager(query(0, 100, None), &[0, 0, 0, 0]);
    let Step::Send(reqs) = p.poll() else { panic!() };
    // n1 serves shard 1 only.
    for r in &reqs {
        if r.node.as_str() == "n1" {
            p.on_failure(r.id);
        } else {
            let (s, b) = c.answer(r);
            p.on_response(r.id, s, &b);
        }
    }
    let Step::Failed {
        request, shards, ..
    } = p.poll()
    else {
        panic!()
    };
    assert_eq!(shards, vec![1]);
    assert_eq!(p.poll(), Step::Wait);
    p.skip(request).unwrap();
    assert!(p.skip(request).is_err());
    let (got, _) = c.run(&mut p);
    let got = got.unwrap();
    assert_eq!(p.unavailable_shards(), vec![1]);
    let want: Vec<Value> = {
        let mut c2 = c.clone();
        c2.docs.retain(|d| doc_shard(d) != 1);
        c2.oracle(&query(0, 100, None))
    };
    assert_eq!(got["results"], json!(want));
    assert_eq!(got["total"], json!(want.len()));
}

#[test]
fn unassigned_shards_are_unavailable() {
    let c = small();
    let mut cover = c.cover(&[0, 0, 0, 0]);
    for e in &mut cover {
        e.assigned.retain(|s| *s != 2);
    }
    let mut p = DocumentsPager::new("movies", query(0, 100, None), cover, 4, &|_| 0);
    let (got, _) = c.run(&mut p);
    assert_eq!(p.unavailable_shards(), vec![2]);
    let n = c.docs.iter().filter(|d| doc_shard(d) != 2).count();
    assert_eq!(got.unwrap()["total"], json!(n));
}

#[test]
fn invalid_covers_and_sort_are_refused() {
    let c = small();
    let dup = vec![
        CoverEntry::new("n0", vec![0, 1], vec![0, 1]),
        CoverEntry::new("n1", vec![1], vec![1]),
    ];
    let mut p = DocumentsPager::new("movies", query(0, 20, None), dup, 2, &|_| 0);
    assert!(matches!(p.poll(), Step::Error(e) if e.status == 500 && e.code == "internal"));
    let out = vec![CoverEntry::new("n0", vec![5], vec![5])];
    let mut p = DocumentsPager::new("movies", query(0, 20, None), out, 2, &|_| 0);
    assert!(matches!(p.poll(), Step::Error(e) if e.status == 500));
    let q = DocumentsQuery {
        sort: Some(vec!["rank:asc".into()]),
        ..DocumentsQuery::new()
    };
    let mut p = c.pager(q, &[0, 0, 0, 0]);
    let Step::Error(e) = p.poll() else { panic!() };
    assert_eq!(
        (e.status, e.code.as_str()),
        (501, "miroir_unsupported_documents_sort")
    );
}

#[test]
fn ids_are_fetched_from_their_shards_nodes() {
    let c = small();
    let ids: Vec<String> = ["0", "d1", "3", "4", "d7", "d9", "missing", "12", "0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let q = DocumentsQuery {
        ids: Some(ids.clone()),
        ..query(1, 3, None)
    };
    let (got, reqs) = c.run(&mut c.pager(q.clone(), &[1, 0, 1, 0]));
    assert!(reqs.iter().all(|r| r.path.ends_with("/documents/fetch")));
    let mut seen: Vec<String> = Vec::new();
    for r in &reqs {
        assert_eq!(r.body["offset"], json!(0));
        let sent: Vec<String> = r.body["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(r.body["limit"], json!(sent.len()));
        seen.extend(sent);
    }
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(seen.len(), unique.len());
    let want = c.oracle(&DocumentsQuery {
        ids: Some(ids.clone()),
        ..query(0, 100, None)
    });
    let got = got.unwrap();
    assert_eq!(got["results"], json!(want[1..4]));
    assert_eq!(got["total"], json!(want.len()));
    // With fields, `_miroir_shard` is asked for and stripped.
    let q = DocumentsQuery {
        ids: Some(ids),
        fields: Some(vec!["color".into()]),
        filter: Some(json!("color = red")),
        ..query(0, 20, None)
    };
    let (got, reqs) = c.run(&mut c.pager(q.clone(), &[0, 0, 0, 0]));
    assert!(reqs
        .iter()
        .all(|r| r.body["fields"] == json!(["color", "_miroir_shard"])));
    assert!(reqs
        .iter()
        .all(|r| r.body["filter"] == json!("color = red")));
    assert_eq!(got.unwrap()["results"], json!(c.oracle(&q)));
}

#[test]
fn empty_ids_still_ask_the_nodes() {
    let c = small();
    let q = DocumentsQuery {
        ids: Some(vec![]),
        ..query(0, 20, None)
    };
    let (got, reqs) = c.run(&mut c.pager(q, &[0, 0, 0, 0]));
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        got.unwrap(),
        json!({"results": [], "offset": 0, "limit": 20, "total": 0})
    );
}

#[test]
fn malformed_ids_answers_are_bad_node_responses() {
    let c = small();
    for body in [
        json!({"results": [{"id": 0}]}),
        json!({"results": [{"id": 0, "_miroir_shard": 99}]}),
        json!({"results": [{"id": 0, "_miroir_shard": "0"}]}),
        json!({"results": "x"}),
        json!({"results": [{}, {}, {}]}),
    ] {
        let q = DocumentsQuery {
            ids: Some(vec!["0".into(), "4".into()]),
            ..query(0, 20, None)
        };
        let docs = vec![(0u32, 0u8, 0u8, true)];
        let one = Cluster::build(1, 1, &docs, vec![vec![0]]);
        let mut p = one.pager(q, &[0]);
        let step = answer_all_with(&mut p, body.clone(), 200);
        assert!(
            matches!(&step, Step::Error(e) if e.code == "miroir_bad_node_response"),
            "{body}: {step:?}"
        );
    }
    let _ = c;
}

// ---------------------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Setup {
    cluster: Cluster,
    covers: Vec<Vec<usize>>,
}

fn setup() -> impl Strategy<Value = Setup> {
    (1u32..=5, 1usize..=4).prop_flat_map(|(shards, n_nodes)| {
        let docs = prop::collection::vec((0..shards, 0u8..3, 0u8..10, any::<bool>()), 0..50);
        let replicas = prop::collection::vec(
            prop::collection::btree_set(0..n_nodes, 1..=n_nodes.min(3)),
            shards as usize,
        );
        let covers = prop::collection::vec(prop::collection::vec(0usize..3, shards as usize), 1..6);
        (docs, replicas, covers).prop_map(move |(docs, replicas, covers)| Setup {
            cluster: Cluster::build(
                shards,
                n_nodes,
                &docs,
                replicas
                    .into_iter()
                    .map(|r| r.into_iter().collect())
                    .collect(),
            ),
            covers,
        })
    })
}

fn filter_strategy() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!("color = red"))),
        Just(Some(json!(["rank > 3"]))),
        Just(Some(json!([["color = blue", "color = green"], "rank < 8"]))),
        Just(Some(json!("color = red OR rank 2 TO 4"))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_page_is_the_oracle_slice(s in setup(), offset in 0usize..60, limit in 0usize..30, filter in filter_strategy()) {
        let q = query(offset, limit, filter);
        let want = s.cluster.oracle(&q);
        let (got, _) = s.cluster.run(&mut s.cluster.pager(q.clone(), &s.covers[0]));
        let got = got.unwrap();
        let slice: Vec<Value> = want.iter().skip(offset).take(limit).cloned().collect();
        prop_assert_eq!(got, json!({"results": slice, "offset": offset, "limit": limit, "total": want.len()}));
    }

    #[test]
    fn consecutive_pages_concatenate_under_rotating_covers(s in setup(), limit in 1usize..12, filter in filter_strategy()) {
        let want = s.cluster.oracle(&query(0, usize::MAX, filter.clone()));
        let mut all = Vec::new();
        let mut offset = 0;
        let mut page = 0;
        loop {
            let cover = &s.covers[page % s.covers.len()];
            let (got, reqs) = s.cluster.run(&mut s.cluster.pager(query(offset, limit, filter.clone()), cover));
            let got = got.unwrap();
            prop_assert_eq!(&got["total"], &json!(want.len()));
            let results = got["results"].as_array().unwrap().clone();
            prop_assert!(results.len() <= limit);
            // At most one fetch per shard, only for shards the page touches.
            prop_assert!(reqs.iter().filter(|r| r.path.ends_with("fetch")).count() <= results.len());
            if results.is_empty() {
                break;
            }
            offset += results.len();
            all.extend(results);
            page += 1;
        }
        prop_assert_eq!(all, want);
    }

    #[test]
    fn ids_pages_are_the_oracle_slice(
        s in setup(),
        picks in prop::collection::vec(0usize..60, 0..15),
        offset in 0usize..10,
        limit in 0usize..10,
        filter in filter_strategy(),
    ) {
        let ids: Vec<String> = picks
            .iter()
            .map(|&i| match s.cluster.docs.get(i) {
                Some(d) => id_str(d),
                None => format!("ghost{i}"),
            })
            .collect();
        let q = DocumentsQuery { ids: Some(ids), ..query(offset, limit, filter) };
        let want = s.cluster.oracle(&q);
        let (got, reqs) = s.cluster.run(&mut s.cluster.pager(q.clone(), &s.covers[0]));
        let got = got.unwrap();
        prop_assert!(reqs.iter().all(|r| r.path.ends_with("/documents/fetch")));
        let slice: Vec<Value> = want.iter().skip(offset).take(limit).cloned().collect();
        prop_assert_eq!(got, json!({"results": slice, "offset": offset, "limit": limit, "total": want.len()}));
    }
}

#[test]
fn ids_requests_can_be_retried_and_failures_are_reported_one_at_a_time() {
    let c = small();
    let ids: Vec<String> = c.docs.iter().map(id_str).collect();
    let q = DocumentsQuery {
        ids: Some(ids),
        ..query(4, 10, None)
    };
    let want = c.oracle(&q);
    let mut p = c.pager(q, &[0, 0, 0, 0]);
    let Step::Send(reqs) = p.poll() else { panic!() };
    // n0 (shards 0, 3) and n2 (shard 2) are unreachable.
    for r in &reqs {
        if r.node.as_str() == "n1" {
            let (s, b) = c.answer(r);
            p.on_response(r.id, s, &b);
        } else {
            p.on_failure(r.id);
        }
    }
    let mut reported = Vec::new();
    let got = loop {
        match p.poll() {
            Step::Failed {
                request,
                node,
                shards,
            } => {
                reported.push((node.as_str().to_string(), shards.clone()));
                // n1 holds 0, 1, 3; n0 holds 0, 2, 3.
                let (target, held) = if shards.contains(&2) {
                    ("n0", vec![0, 2, 3])
                } else {
                    ("n1", vec![0, 1, 3])
                };
                p.retry(request, NodeId::new(target), held).unwrap();
            }
            Step::Send(retries) => {
                for r in &retries {
                    let (s, b) = c.answer(r);
                    p.on_response(r.id, s, &b);
                }
            }
            Step::Done(v) => break v,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        reported,
        vec![("n0".to_string(), vec![0, 3]), ("n2".to_string(), vec![2])]
    );
    assert_eq!(got["results"], json!(want[4..14]));
    assert_eq!(got["total"], json!(want.len()));
}
