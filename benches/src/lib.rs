//! Shared fixtures for Miroir's benchmarks: deterministic shard answers built from a seed, shaped like what
//! Meilisearch 1.50 returns (hits with `_rankingScoreDetails`, facet distributions and stats).

pub mod harness;

use serde_json::{json, Map, Value};

/// A tiny deterministic generator (SplitMix64) so every bench run sees the same data.
pub struct Gen(u64);

impl Gen {
    pub fn new(seed: u64) -> Self {
        Gen(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

const GENRES: [&str; 8] = [
    "action", "comedy", "drama", "horror", "romance", "scifi", "western", "noir",
];

/// Document ids `0..n` as strings, the shape clients send most.
pub fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("doc-{i}")).collect()
}

/// One node's answer to an over-fetched search: `hits` sorted the way the node would sort them (by the
/// details in rule order), with `_miroir_shard`, ranking details, and optional facets.
pub fn shard_answer(shard: u32, hits: usize, facets: bool, gen: &mut Gen) -> Value {
    let mut list: Vec<(u64, u64, Map<String, Value>)> = (0..hits)
        .map(|i| {
            let words = 1 + gen.below(3);
            let rating = gen.below(100);
            let year = 1950 + gen.below(75);
            let genre = GENRES[gen.below(GENRES.len() as u64) as usize];
            let mut hit = Map::new();
            hit.insert("id".into(), json!(format!("s{shard}-{i}")));
            hit.insert("title".into(), json!(format!("title {i} of shard {shard}")));
            hit.insert("genre".into(), json!(genre));
            hit.insert("rating".into(), json!(rating));
            hit.insert("year".into(), json!(year));
            hit.insert("_miroir_shard".into(), json!(shard));
            hit.insert(
                "_rankingScoreDetails".into(),
                json!({
                    "words": {"order": 0, "matchingWords": words, "maxMatchingWords": 3, "score": words as f64 / 3.0},
                    "typo": {"order": 1, "typoCount": 0, "maxTypoCount": 1, "score": 1.0},
                    "rating:desc": {"order": 2, "value": rating as f64},
                    "year:asc": {"order": 3, "value": year as f64}
                }),
            );
            (words, rating, hit)
        })
        .collect();
    list.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let mut body = Map::new();
    body.insert(
        "hits".into(),
        Value::Array(list.into_iter().map(|(_, _, h)| Value::Object(h)).collect()),
    );
    body.insert("query".into(), json!("star"));
    body.insert("processingTimeMs".into(), json!(gen.below(5)));
    body.insert("limit".into(), json!(hits));
    body.insert("offset".into(), json!(0));
    body.insert("estimatedTotalHits".into(), json!(hits * 3));
    if facets {
        let mut genre = Map::new();
        for g in GENRES {
            genre.insert(g.into(), json!(1 + gen.below(500)));
        }
        let mut year = Map::new();
        for y in 1950..2025 {
            year.insert(y.to_string(), json!(1 + gen.below(40)));
        }
        body.insert(
            "facetDistribution".into(),
            json!({"genre": genre, "year": year}),
        );
        body.insert(
            "facetStats".into(),
            json!({"year": {"min": 1950.0, "max": 2024.0}}),
        );
    }
    Value::Object(body)
}

/// The client search the merge bench plans: `limit` hits, with facets when asked.
pub fn client_search(limit: usize, facets: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("q".into(), json!("star"));
    m.insert("limit".into(), json!(limit));
    if facets {
        m.insert("facets".into(), json!(["genre", "year"]));
    }
    m
}

/// The client search of a merge bench case: [`client_search`] with facets for `"facets"`, a two-key
/// `sort` for `"sort"`, `distinct: "genre"` for `"distinct"`.
pub fn client_search_variant(limit: usize, variant: &str) -> Map<String, Value> {
    let mut client = client_search(limit, variant == "facets");
    match variant {
        "sort" => {
            client.insert("sort".into(), json!(["rating:desc", "year:asc"]));
        }
        "distinct" => {
            client.insert("distinct".into(), json!("genre"));
        }
        _ => {}
    }
    client
}

/// What the proxy does for one search over the nodes' answer `texts` but the network: plans `client`,
/// serializes each node request, locates each answer, merges them as text and writes the reply.
pub fn merge_text_reply(
    client: &Map<String, Value>,
    ctx: &miroir_core::search::SearchContext,
    texts: &[String],
) -> Vec<u8> {
    use miroir_core::search::{merge_search_text, RawAnswer};
    let plan = miroir_core::search::plan_search(client, ctx).expect("a valid search");
    let answers = texts
        .iter()
        .enumerate()
        .map(|(order, t)| {
            std::hint::black_box(serde_json::to_vec(&plan.node_request(None)).expect("a request"));
            RawAnswer::parse(order, t.clone())
        })
        .collect();
    merge_search_text(&plan, answers, None)
        .expect("merge")
        .into_bytes()
}

/// Locates the nodes' answer `texts` (in node order) and merges them as text, as the proxy does once
/// the answers arrived.
pub fn locate_and_merge(plan: &miroir_core::search::SearchPlan, texts: Vec<String>) -> String {
    use miroir_core::search::{merge_search_text, RawAnswer};
    let answers = texts
        .into_iter()
        .enumerate()
        .map(|(order, t)| RawAnswer::parse(order, t))
        .collect();
    merge_search_text(plan, answers, None).expect("merge")
}

/// A topology of `nodes` nodes in one group with S = `shards` and replication factor `rf`.
pub fn topology(nodes: usize, shards: u32, rf: u32) -> miroir_core::topology::Topology {
    use miroir_core::topology::{Node, Topology};
    Topology {
        epoch: 1,
        shards,
        replication_factor: rf,
        replica_groups: 1,
        nodes: (0..nodes)
            .map(|i| Node::active(format!("meili-{i}"), format!("http://10.0.0.{i}:7700"), 0))
            .collect(),
    }
}

/// `n` documents with an `id`, a title, a genre and a year, as a client batch.
pub fn documents(n: usize, gen: &mut Gen) -> Vec<Map<String, Value>> {
    (0..n)
        .map(|i| {
            let mut d = Map::new();
            d.insert("id".into(), json!(i));
            d.insert("title".into(), json!(format!("title number {i}")));
            d.insert(
                "genre".into(),
                json!(GENRES[gen.below(GENRES.len() as u64) as usize]),
            );
            d.insert("year".into(), json!(1950 + gen.below(75)));
            d
        })
        .collect()
}

/// Words the padded hits' `overview` is made of.
const WORDS: [&str; 12] = [
    "a", "lonely", "pilot", "crosses", "the", "desert", "to", "find", "her", "brother", "before",
    "winter",
];

/// The three node answers of the proxy-CPU case (3 shards × 20 hits of about 1 KB), the same in every
/// bench that measures it.
pub fn proxy_cpu_answers() -> Vec<String> {
    let mut gen = Gen::new(11);
    (0..3)
        .map(|s| shard_answer_sized(s, 20, 1024, &mut gen).to_string())
        .collect()
}

/// [`shard_answer`] (without facets) with every hit padded by an `overview` text field to about `hit_bytes`
/// bytes of JSON, the size of a typical document with a description.
pub fn shard_answer_sized(shard: u32, hits: usize, hit_bytes: usize, gen: &mut Gen) -> Value {
    let mut body = shard_answer(shard, hits, false, gen);
    if let Some(Value::Array(list)) = body.get_mut("hits") {
        for hit in list {
            let len = hit.to_string().len();
            let mut text = String::new();
            while len + text.len() + 16 < hit_bytes {
                text.push_str(WORDS[gen.below(WORDS.len() as u64) as usize]);
                text.push(' ');
            }
            if let Some(obj) = hit.as_object_mut() {
                obj.insert("overview".into(), Value::String(text));
            }
        }
    }
    body
}
