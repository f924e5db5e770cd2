//! The hostile-input properties of the cargo-fuzz targets (`fuzz/`), run on stable in the normal test suite.
//!
//! The properties themselves live in `fuzz/src/props.rs`, included here verbatim, so the fuzz targets and
//! this suite check exactly the same things: no panic on any client request or node answer, errors that
//! are Meilisearch-shaped 4xx/5xx `MeiliError`s, and simple facts about successful results (windows, caps,
//! no `_miroir_*` field reaching a client, documents planned onto nodes holding their shard). Here proptest
//! generates the inputs (random bytes, recursive JSON values biased towards the keys the code interprets,
//! random query pairs, plausible and malformed node answers); 256 cases per property.

#[path = "../../fuzz/src/props.rs"]
mod props;

use std::collections::BTreeMap;

use miroir_core::search::{plan_search, FacetOrder, NodeAnswer, SearchContext, ShardRestriction};
use miroir_core::{MeiliError, SHARD_FIELD};
use props::{DocumentsInput, PagerQuery, PagerReply};
use proptest::prelude::*;
use serde_json::{Map, Value};

const CASES: u32 = 256;

// ----- generic JSON -----

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "", "*", "drama", "Drama ", "1", "-1", "1.5", "3.0", "18446744073709551616", "true",
            "succeeded", "failed", "canceled", "processing", "2026-11-27T09:16:21.268Z",
            "2026-11-27T09:16:21.3+01:00", "genre = drama", "_miroir_shard = 1", "a,b,,c",
            "title:asc", "_geoPoint(48.5, 2.5):asc", "movies", "\u{0}", "é",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        7 => prop::sample::select(props::KEYS).prop_map(str::to_string),
        1 => "[a-zA-Z_.]{0,8}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..20).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (0u8..=100).prop_map(|p| Value::from(f64::from(p) / 100.0)),
        (0u64..3).prop_map(|d| Value::from(u64::MAX - d)),
    ]
}

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((key(), json()), 0..6).prop_map(|kv| kv.into_iter().collect())
}

fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        7 => prop::sample::select(props::PARAMS).prop_map(str::to_string),
        1 => any::<String>(),
    ];
    let value = prop_oneof![
        (0u32..30).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        string(),
    ];
    prop::collection::vec((name, value), 0..6)
}

// ----- documents -----

fn documents_body() -> impl Strategy<Value = Vec<u8>> {
    let docs = || prop::collection::vec(object(), 0..5);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        docs().prop_map(|d| serde_json::to_vec(&d).unwrap_or_default()),
        json().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        docs().prop_map(|d| {
            d.iter()
                .flat_map(|doc| {
                    let mut line = serde_json::to_vec(doc).unwrap_or_default();
                    line.push(b'\n');
                    line
                })
                .collect()
        }),
        prop::collection::vec(
            prop::collection::vec(
                prop_oneof![
                    string(),
                    (
                        string(),
                        prop::sample::select(vec!["string", "number", "boolean", "x"])
                    )
                        .prop_map(|(n, t)| format!("{n}:{t}")),
                ],
                0..4
            ),
            0..4
        )
        .prop_map(|rows| {
            rows.iter()
                .map(|r| r.join(","))
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes()
        }),
    ]
}

fn documents_input() -> impl Strategy<Value = DocumentsInput> {
    let pk = prop::option::of(prop_oneof![
        prop::sample::select(vec!["id", "title", "info.id", "sku"]).prop_map(str::to_string),
        any::<String>(),
    ]);
    (
        prop::option::of(prop_oneof![
            3 => prop::sample::select(props::CONTENT_TYPES).prop_map(str::to_string),
            1 => any::<String>(),
        ]),
        prop::option::of(prop_oneof![
            prop::sample::select(vec![";", "\t", "|", ""]).prop_map(str::to_string),
            any::<String>(),
        ]),
        documents_body(),
        pk.clone(),
        pk,
    )
        .prop_map(
            |(content_type, csv_delimiter, body, index_pk, pk_param)| DocumentsInput {
                content_type,
                csv_delimiter,
                body,
                index_pk,
                pk_param,
            },
        )
}

// ----- search -----

fn context() -> impl Strategy<Value = SearchContext> {
    let caps = prop_oneof![
        Just((1000usize, 100usize)),
        (0usize..30, 0usize..5),
        Just((usize::MAX, usize::MAX)),
        (any::<usize>(), any::<usize>()),
    ];
    let order = prop::option::of(prop_oneof![
        Just(FacetOrder::Alpha),
        Just(FacetOrder::Count)
    ]);
    let distinct = prop::option::of(prop::sample::select(vec!["genre", "director"]));
    (caps, order, distinct).prop_map(|((max_total_hits, max_values), order, distinct)| {
        let mut ctx = SearchContext {
            max_total_hits,
            max_values_per_facet: max_values,
            ..Default::default()
        };
        if let Some(o) = order {
            ctx.sort_facet_values_by.insert("*".into(), o);
        }
        ctx.distinct_attribute = distinct.map(str::to_string);
        ctx
    })
}

const USER_FIELDS: [&str; 7] = [
    "id",
    "title",
    "genre",
    "year",
    "director",
    "tags",
    "info.lang",
];

fn search_body() -> impl Strategy<Value = Map<String, Value>> {
    let pagination_value = prop_oneof![
        3 => Just(None),
        2 => (0u64..12).prop_map(|n| Some(Value::from(n))),
        1 => Just(Some(Value::from(u64::MAX))),
        1 => json().prop_map(Some),
    ];
    (
        prop::collection::vec(pagination_value, 4),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(USER_FIELDS.to_vec())),
        prop::option::of(prop::collection::vec(
            prop::sample::select([&USER_FIELDS[..], &["*"]].concat()),
            0..4,
        )),
        prop::option::of(object()),
    )
        .prop_map(|(pagination, score, details, distinct, attrs, noise)| {
            let mut m = Map::new();
            for (k, v) in ["offset", "limit", "page", "hitsPerPage"]
                .iter()
                .zip(pagination)
            {
                if let Some(v) = v {
                    m.insert(k.to_string(), v);
                }
            }
            if let Some(b) = score {
                m.insert("showRankingScore".into(), Value::Bool(b));
            }
            if let Some(b) = details {
                m.insert("showRankingScoreDetails".into(), Value::Bool(b));
            }
            if let Some(d) = distinct {
                m.insert("distinct".into(), Value::from(d));
            }
            if let Some(a) = attrs {
                m.insert("attributesToRetrieve".into(), Value::from(a));
            }
            m.extend(noise.unwrap_or_default());
            m
        })
}

fn restriction() -> impl Strategy<Value = ShardRestriction> {
    (
        prop::collection::vec(0u32..8, 0..5),
        prop::collection::vec(0u32..8, 0..5),
    )
        .prop_map(|(assigned, held)| ShardRestriction { assigned, held })
}

/// A hit as a node answers it for documents written through Miroir.
fn shaped_hit() -> impl Strategy<Value = Value> {
    let user = prop::collection::vec((prop::sample::select(USER_FIELDS.to_vec()), json()), 0..3);
    let rule = |name: &'static str| {
        let entry = match name {
            "rating:desc" | "year:asc" => prop_oneof![
                number(),
                string().prop_map(Value::String),
                Just(Value::Null)
            ]
            .prop_map(|v| ("value", v))
            .boxed(),
            "_geoPoint(48.5, 2.5):asc" => number().prop_map(|v| ("distance", v)).boxed(),
            _ => number().prop_map(|v| ("score", v)).boxed(),
        };
        prop::option::of(entry).prop_map(move |e| (name, e))
    };
    let details = prop::option::of((
        rule("words"),
        rule("rating:desc"),
        rule("year:asc"),
        rule("_geoPoint(48.5, 2.5):asc"),
        rule("typo"),
    ));
    (
        user,
        0u64..4,
        prop::option::of(number()),
        details,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(user, shard, score, details, formatted, matches)| {
            let mut hit = Map::new();
            for (k, v) in user {
                hit.insert(k.to_string(), strip_reserved(v));
            }
            let inner: Map<String, Value> = hit
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain([(SHARD_FIELD.to_string(), Value::from(shard.to_string()))])
                .collect();
            hit.insert(SHARD_FIELD.into(), Value::from(shard));
            if let Some(s) = score {
                hit.insert("_rankingScore".into(), s);
            }
            if let Some((a, b, c, d, e)) = details {
                let mut m = Map::new();
                for (order, (name, entry)) in [a, b, c, d, e].into_iter().enumerate() {
                    if let Some((field, v)) = entry {
                        let mut rule = Map::new();
                        rule.insert("order".into(), Value::from(order as u64));
                        rule.insert(field.into(), v);
                        m.insert(name.into(), Value::Object(rule));
                    }
                }
                hit.insert("_rankingScoreDetails".into(), Value::Object(m));
            }
            if formatted {
                hit.insert("_formatted".into(), Value::Object(inner.clone()));
            }
            if matches {
                hit.insert("_matchesPosition".into(), Value::Object(inner));
            }
            Value::Object(hit)
        })
}

fn strip_reserved(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| !k.starts_with(miroir_core::RESERVED_PREFIX))
                .map(|(k, v)| (k, strip_reserved(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_reserved).collect()),
        other => other,
    }
}

/// A search answer as a node sends it: hits, totals, facets (with `_miroir_shard` as for `facets: ["*"]`).
fn shaped_search_answer() -> impl Strategy<Value = Value> {
    let total = prop_oneof![3 => (0u64..5000).prop_map(Value::from), 1 => number()];
    let facet_values = prop::collection::vec(
        (
            prop_oneof![(0u32..12).prop_map(|n| n.to_string()), string()],
            0u64..100,
        ),
        0..5,
    );
    (
        prop::collection::vec(shaped_hit(), 0..6),
        prop::option::of(total.clone()),
        prop::option::of(total),
        prop::option::of(prop::collection::vec(
            (prop::sample::select(USER_FIELDS.to_vec()), facet_values),
            0..3,
        )),
        any::<bool>(),
        prop::option::of((number(), number())),
        prop::option::of(prop_oneof![
            (0u64..10).prop_map(Value::from),
            Just(Value::from(u64::MAX))
        ]),
    )
        .prop_map(
            |(hits, estimated, total, facets, shard_facet, stats, semantic)| {
                let mut m = Map::new();
                m.insert("hits".into(), Value::Array(hits));
                m.insert("query".into(), Value::from("q"));
                m.insert("processingTimeMs".into(), Value::from(3));
                if let Some(t) = estimated {
                    m.insert("estimatedTotalHits".into(), t);
                }
                if let Some(t) = total {
                    m.insert("totalHits".into(), t);
                }
                if let Some(facets) = facets {
                    let mut dist: Map<String, Value> = facets
                        .into_iter()
                        .map(|(name, values)| {
                            let values: Map<String, Value> = values
                                .into_iter()
                                .map(|(k, c)| (k, Value::from(c)))
                                .collect();
                            (name.to_string(), Value::Object(values))
                        })
                        .collect();
                    if shard_facet {
                        dist.insert(SHARD_FIELD.into(), serde_json::json!({"1": 3}));
                    }
                    m.insert("facetDistribution".into(), Value::Object(dist));
                }
                if let Some((min, max)) = stats {
                    let mut s = serde_json::json!({"year": {"min": min, "max": max}});
                    if shard_facet {
                        s[SHARD_FIELD] = serde_json::json!({"min": 0.0, "max": 3.0});
                    }
                    m.insert("facetStats".into(), s);
                }
                if let Some(n) = semantic {
                    m.insert("semanticHitCount".into(), n);
                }
                Value::Object(m)
            },
        )
}

fn with_orders(bodies: Vec<Value>) -> Vec<NodeAnswer> {
    bodies
        .into_iter()
        .enumerate()
        .map(|(order, body)| NodeAnswer { order, body })
        .collect()
}

fn facet_search_answer() -> impl Strategy<Value = Value> {
    let count = prop_oneof![
        3 => (0u64..100).prop_map(Value::from),
        1 => Just(Value::from(u64::MAX)),
        1 => number(),
    ];
    // Few distinct values, so one node repeating a value is common.
    let value = prop_oneof![
        3 => prop::sample::select(vec!["a", "B", "b "]).prop_map(str::to_string),
        1 => string(),
    ];
    prop_oneof![
        4 => (prop::collection::vec((value, count), 0..5), string(), number()).prop_map(|(hits, q, t)| {
            let hits: Vec<Value> = hits
                .into_iter()
                .map(|(value, count)| serde_json::json!({"value": value, "count": count}))
                .collect();
            serde_json::json!({"facetHits": hits, "facetQuery": q, "processingTimeMs": t})
        }),
        1 => json(),
    ]
}

// ----- tasks -----

fn date() -> impl Strategy<Value = String> {
    "(19[7-9][0-9]|20[0-9][0-9]|[0-9]{5})-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2})"
}

fn node_task_object() -> impl Strategy<Value = Value> {
    let time = prop_oneof![
        Just(Value::Null),
        string().prop_map(Value::String),
        date().prop_map(Value::String)
    ];
    let error = prop::option::of(prop::collection::vec(
        (
            prop::sample::select(vec!["message", "code", "type", "link"]),
            string(),
        ),
        0..5,
    ));
    prop_oneof![
        4 => (
            prop::sample::select(vec!["succeeded", "failed", "canceled", "processing", "enqueued", "bogus"]),
            time.clone(),
            time,
            prop::collection::vec(
                (prop::sample::select(vec!["receivedDocuments", "indexedDocuments", "deletedDocuments"]), number()),
                0..3
            ),
            error,
        )
            .prop_map(|(status, started, finished, details, error)| {
                let details: Map<String, Value> =
                    details.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                let error = error.map_or(Value::Null, |e| {
                    Value::Object(e.into_iter().map(|(k, v)| (k.to_string(), Value::String(v))).collect())
                });
                serde_json::json!({
                    "status": status, "startedAt": started, "finishedAt": finished,
                    "details": details, "error": error
                })
            }),
        1 => json(),
    ]
}

// ----- config -----

fn config_text() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        (0u32..5).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        string().prop_map(|s| format!("{s:?}")),
        prop::sample::select(vec![
            "true", "~", "[]", "{}", "majority", "redis", "partial", "0.0.0.0"
        ])
        .prop_map(str::to_string),
    ];
    let top = prop::collection::vec(
        (
            prop::sample::select(vec![
                "shards",
                "replication_factor",
                "replica_groups",
                "write_quorum",
                "master_key",
                "typo_key",
            ]),
            scalar.clone(),
        ),
        0..4,
    );
    let sections = prop::collection::vec(
        (
            prop::sample::select(vec!["task_store", "health", "server", "scatter", "admin"]),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "backend",
                        "path",
                        "url",
                        "interval_ms",
                        "timeout_ms",
                        "port",
                        "bind",
                        "enabled",
                        "unavailable_shard_policy",
                    ]),
                    scalar.clone(),
                ),
                0..3,
            ),
        ),
        0..3,
    );
    let nodes = prop::collection::vec(
        (
            prop::option::of(scalar.clone()),
            prop::option::of(scalar.clone()),
            prop::option::of(scalar),
        ),
        0..4,
    );
    prop_oneof![
        4 => (top, sections, nodes).prop_map(|(top, sections, nodes)| {
            let mut text = String::from("miroir:\n");
            for (k, v) in top {
                text.push_str(&format!("  {k}: {v}\n"));
            }
            for (section, keys) in sections {
                text.push_str(&format!("  {section}:\n"));
                for (k, v) in keys {
                    text.push_str(&format!("    {k}: {v}\n"));
                }
            }
            text.push_str("  nodes:\n");
            for (i, (id, address, group)) in nodes.into_iter().enumerate() {
                text.push_str(&format!(
                    "    - id: {}\n      address: {}\n      replica_group: {}\n",
                    id.unwrap_or(format!("meili-{i}")),
                    address.unwrap_or(format!("http://127.0.0.1:770{i}")),
                    group.unwrap_or((i % 2).to_string()),
                ));
            }
            text
        }),
        1 => any::<String>(),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

fn env() -> impl Strategy<Value = BTreeMap<String, String>> {
    let value = prop_oneof![
        any::<u64>().prop_map(|n| format!("sekrit-{n:016x}")),
        (0u32..70000).prop_map(|n| n.to_string()),
        string(),
    ];
    prop::collection::btree_map(
        prop::sample::select(props::ENV_VARS).prop_map(str::to_string),
        value,
        0..4,
    )
}

// ----- pager -----

fn pager_reply() -> impl Strategy<Value = PagerReply> {
    let doc = (object(), prop::option::of(0u64..5)).prop_map(|(mut d, shard)| {
        if let Some(s) = shard {
            d.insert(SHARD_FIELD.into(), Value::from(s));
        }
        Value::Object(d)
    });
    let count = prop_oneof![3 => 0u64..30, 1 => any::<u64>()];
    prop_oneof![
        1 => Just(PagerReply::Fail),
        1 => any::<bool>().prop_map(PagerReply::Retry),
        1 => (prop::sample::select(vec![200u16, 400, 404, 500, 503]), json())
            .prop_map(|(status, body)| PagerReply::Raw { status, body }),
        3 => (
            prop::collection::vec((0u32..5, count), 0..5),
            prop::collection::vec(doc, 0..5),
            prop::bool::weighted(0.1),
        )
            .prop_map(|(counts, docs, overcount)| PagerReply::Shaped { counts, docs, overcount }),
    ]
}

fn pager_query() -> impl Strategy<Value = PagerQuery> {
    prop_oneof![
        pairs().prop_map(PagerQuery::Pairs),
        object().prop_map(|o| PagerQuery::Fetch(Value::Object(o))),
        json().prop_map(PagerQuery::Fetch),
    ]
}

type Cover = Option<props::CustomCover>;

fn pager_cover() -> impl Strategy<Value = Cover> {
    let shards = || prop::collection::vec(0u32..6, 0..4);
    prop_oneof![
        3 => Just(None),
        1 => prop::collection::vec((any::<bool>(), shards(), shards()), 0..3).prop_map(Some),
    ]
}

// ----- the properties -----

// ----- primary-key narrowing -----

fn pk_filter() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        4 => prop::sample::select(vec![
            "id = 1", "id = \"A-b\"", "id IN [1, 2, x]", "id != 3", "id NOT IN [4]", "genre = drama",
            "year > 3", "id = 9007199254740993", "id = \"é\"", "id EXISTS", "id IN []", "ID = 2",
        ])
        .prop_map(str::to_string),
        1 => string(),
    ];
    atom.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} AND {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} OR {b}")),
            inner.clone().prop_map(|a| format!("NOT {a}")),
            inner.prop_map(|a| format!("({a})")),
        ]
    })
}

// ----- auth -----

fn auth_claims() -> impl Strategy<Value = Value> {
    let uid = prop::sample::select(vec!["u-search", "u-admin", "u-old", "u-tasks", "nope"]);
    let index = prop::sample::select(vec!["movies", "prod_x", "books", "*"]);
    let rule = prop_oneof![
        Just(Value::Null),
        string().prop_map(|f| serde_json::json!({ "filter": f })),
        json(),
    ];
    let rules = prop_oneof![
        prop::collection::btree_map(index.clone().prop_map(str::to_string), rule, 0..3)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        prop::collection::vec(index.prop_map(Value::from), 0..3).prop_map(Value::Array),
        json(),
    ];
    let exp = prop_oneof![
        Just(Value::Null),
        (1_700_000_000i64..1_900_000_000).prop_map(Value::from),
        json(),
    ];
    (prop::option::of(uid), prop::option::of(rules), exp).prop_map(|(uid, rules, exp)| {
        let mut m = Map::new();
        if let Some(u) = uid {
            m.insert("apiKeyUid".into(), Value::from(u));
        }
        if let Some(r) = rules {
            m.insert("searchRules".into(), r);
        }
        m.insert("exp".into(), exp);
        Value::Object(m)
    })
}

fn auth_token() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        2 => string().prop_map(Some),
        2 => prop::sample::select(vec![
            "k-search-0001", "k-admin-0002", "k-old-0003", "k-tasks-0004", "the-master-key",
            "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.AAAA",
        ])
        .prop_map(|t| Some(t.to_string())),
        5 => (prop_oneof![Just(Value::Null), json()], auth_claims(), 0..5usize)
            .prop_map(|(h, c, signer)| Some(props::auth_token(&h, &c, signer))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn pk_narrowing_never_panics_and_stays_consistent(
        filter in prop_oneof![
            3 => pk_filter().prop_map(Value::String),
            1 => json(),
        ],
        shards in 1..64u32,
    ) {
        props::check_pk(&filter, "id", shards);
    }

    #[test]
    fn auth_never_panics_nor_leaks_a_key(
        token in auth_token(),
        action in 0..8usize,
        index in prop::option::of(prop_oneof![
            3 => prop::sample::select(vec!["movies", "prod_x", "books", "*", ""]).prop_map(str::to_string),
            1 => string(),
        ]),
        late in any::<bool>(),
    ) {
        let now = if late { 4_000_000_000_000 } else { props::AUTH_NOW };
        props::check_auth(token.as_deref(), action, index.as_deref(), now);
    }

    #[test]
    fn documents_never_panic(input in documents_input()) {
        props::check_documents(&input, &props::placement());
    }

    #[test]
    fn search_plan_never_panics(body in search_body(), ctx in context(), r in restriction()) {
        props::check_search_plan(&body, &ctx, &r);
    }

    #[test]
    fn search_plan_of_any_json_object_never_panics(body in object(), r in restriction()) {
        props::check_search_plan(&body, &SearchContext::default(), &r);
    }

    #[test]
    fn search_query_pairs_never_panic(pairs in pairs(), ctx in context()) {
        props::check_search_query(&pairs, &ctx);
    }

    #[test]
    fn merge_of_well_formed_answers_never_leaks(
        body in search_body(),
        ctx in context(),
        answers in prop::collection::vec(shaped_search_answer(), 0..4),
    ) {
        if let Ok(plan) = plan_search(&body, &ctx) {
            let _ = props::check_merge(&plan, with_orders(answers), true);
        }
    }

    #[test]
    fn merge_of_any_answers_never_panics(
        body in search_body(),
        ctx in context(),
        answers in prop::collection::vec(prop_oneof![shaped_search_answer(), json()], 0..4),
    ) {
        if let Ok(plan) = plan_search(&body, &ctx) {
            let _ = props::check_merge(&plan, with_orders(answers), false);
        }
    }

    #[test]
    fn facet_merge_never_panics(
        answers in prop::collection::vec(facet_search_answer(), 0..4),
        count_order in any::<bool>(),
        max_values in prop_oneof![0usize..5, any::<usize>()],
    ) {
        let order = if count_order { FacetOrder::Count } else { FacetOrder::Alpha };
        props::check_facet_merge(with_orders(answers), order, max_values);
    }

    #[test]
    fn task_aggregation_and_filters_never_panic(
        uid in any::<u64>(),
        enqueued_at in prop_oneof![Just(1_795_770_981_268u64), any::<u64>()],
        two_groups in any::<bool>(),
        quorum in any::<u8>(),
        details in prop::option::of(object()),
        failed_by_miroir in prop::bool::weighted(0.1),
        objects in prop::collection::vec(node_task_object(), 0..6),
        elapsed in prop_oneof![0u64..120_000, any::<u64>()],
        lost_after in prop_oneof![Just(60_000u64), any::<u64>()],
        pairs in pairs(),
    ) {
        let error = MeiliError::invalid(400, "invalid_document_id", "bad id");
        let task = props::task_record(
            uid,
            enqueued_at,
            two_groups,
            quorum,
            details,
            failed_by_miroir.then_some(&error),
        );
        props::check_tasks(&task, &objects, enqueued_at.saturating_add(elapsed), lost_after, &pairs);
    }

    #[test]
    fn config_never_panics(text in config_text(), env in env()) {
        props::check_config(&text, &env);
    }

    #[test]
    fn pager_never_panics(
        query in pager_query(),
        cover in pager_cover(),
        replies in prop::collection::vec(pager_reply(), 0..10),
    ) {
        let _ = props::check_pager(&query, cover, &replies);
    }
}

/// The shared properties must reject what they claim to reject: a malformed error fails `check_error`.
#[test]
#[should_panic(expected = "status")]
fn check_error_rejects_a_2xx_error() {
    props::check_error(&MeiliError::invalid(200, "bad_request", "x"), 400..=599);
}

/// A tenant token signed with an index-scoped key opens that key's indexes only, and the property accepts it.
#[test]
fn auth_property_accepts_a_valid_tenant_token() {
    let token = props::auth_token(
        &Value::Null,
        &serde_json::json!({"apiKeyUid": "u-admin", "searchRules": ["*"]}),
        1,
    );
    let ring = props::auth_ring();
    let ok = miroir_core::auth::authorize(
        props::AUTH_MASTER,
        &ring,
        Some(&token),
        miroir_core::auth::Action::Search,
        Some("movies"),
        props::AUTH_NOW,
    );
    assert!(
        matches!(ok, Ok(miroir_core::auth::Access::Scoped(_))),
        "{ok:?}"
    );
    props::check_auth(Some(&token), 0, Some("movies"), props::AUTH_NOW);
    props::check_auth(Some(&token), 0, Some("books"), props::AUTH_NOW);
}

/// The first `pk` fuzz run's find (a bug in the property, not in core): with S=1, or when the pinned ids
/// cover every shard, there is nothing to narrow, and `pinned_shards` rightly says so.
#[test]
fn pk_property_accepts_no_narrowing_when_every_shard_is_pinned() {
    props::check_pk(&Value::from("id = 1"), "id", 1);
    props::check_pk(&Value::from("id = \"!\""), "id", 1);
    props::check_pk(
        &Value::from("id IN [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]"),
        "id",
        2,
    );
    assert_eq!(
        miroir_core::search::pinned_shards(Some(&Value::from("id = 1")), "id", 1),
        None
    );
    // The second find: concatenating `(f) AND id = abc1` let this `f` regroup into `X OR (Y AND pin)`.
    props::check_pk(&Value::from("id = illllz) OR (id = abc1"), "id", 16);
}

/// ... and a reserved key anywhere fails `check_no_reserved_keys`.
#[test]
#[should_panic(expected = "reserved key")]
fn check_no_reserved_keys_finds_nested_keys() {
    props::check_no_reserved_keys(&serde_json::json!({"a": [{"b": {"_miroir_shard": 1}}]}));
}

fn corpus_dir(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Every committed seed of every fuzz target goes through the same seed replay as the fuzz targets.
#[test]
fn committed_seed_corpora_replay_cleanly() {
    for target in props::TARGETS {
        let mut seeds = 0;
        for entry in std::fs::read_dir(corpus_dir(target)).expect("a corpus per target") {
            let path = entry.expect("a corpus entry").path();
            let data = std::fs::read(&path).expect("a readable seed");
            props::replay_seed(target, &data);
            seeds += 1;
        }
        assert!(seeds >= 4, "`{target}` has only {seeds} seeds");
    }
}

/// The plausible node answers of the pager script are plausible enough to finish a listing: counts 3, 2, 5,
/// 0 for shards 0..4, so `offset=2&limit=3` takes the last document of shard 0 and the two of shard 1.
#[test]
fn plausible_pager_answers_finish_the_listing() {
    let query = PagerQuery::Pairs(props::query_string_pairs("?offset=2&limit=3"));
    let body = props::check_pager(&query, None, &props::seed_pager_replies())
        .expect("the script lasts")
        .expect("a listing");
    assert_eq!(body["total"], 10);
    assert_eq!(body["results"].as_array().map(Vec::len), Some(3));
}

/// Two recorded Meilisearch answers merge into a non-empty answer (the seeds exercise the success path).
#[test]
fn recorded_answers_merge() {
    let data = std::fs::read(corpus_dir("merge").join("two-nodes")).expect("the seed");
    let bodies: Vec<Value> = serde_json::from_slice(&data).expect("a JSON array");
    let plan = plan_search(&Map::new(), &SearchContext::default()).expect("an empty body plans");
    let merged = props::check_merge(&plan, with_orders(bodies), false).expect("valid answers");
    assert!(!merged["hits"].as_array().expect("hits").is_empty());
}
