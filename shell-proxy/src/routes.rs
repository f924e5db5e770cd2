//! The route table: parses method + path into a typed [`Route`] covering the whole Meilisearch 1.50 HTTP
//! surface, Miroir's admin API (`/_miroir/*`) and `/metrics`.
//!
//! Path handling follows Meilisearch (actix-web with trailing-slash trimming): empty segments (double or
//! trailing slashes) are ignored, each segment is percent-decoded on its own (so `%2F` inside a document id
//! stays part of the id), and the query string is ignored. A fixed segment wins over a parameter:
//! `GET /indexes/movies/documents/fetch` is a 405 (fetch is POST-only), never a document named `fetch`,
//! and `GET /tasks/cancel` is a 405 rather than a task uid.
//!
//! Outcomes: a [`Route`], or a [`RouteError`]: `NotFound` (no such path), `MethodNotAllowed` (path exists,
//! other methods; carries the allowed ones for the `Allow` header) or `Invalid` (a Meilisearch error such
//! as `invalid_index_uid` for a malformed path parameter).

use http::Method;
use miroir_core::auth::Action;
use miroir_core::MeiliError;
use percent_encoding::percent_decode_str;
use std::fmt;

/// A validated index uid: 1 to 512 bytes of ASCII letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexUid(String);

impl IndexUid {
    /// Validates an index uid as Meilisearch does, with Meilisearch's `invalid_index_uid` error.
    pub fn parse(uid: &str) -> Result<IndexUid, MeiliError> {
        if !uid.is_empty()
            && uid.len() <= 512
            && uid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            Ok(IndexUid(uid.to_string()))
        } else {
            Err(MeiliError::invalid(
                400,
                "invalid_index_uid",
                format!(
                    "`{uid}` is not a valid index uid. Index uid can be an integer or a string containing only alphanumeric characters, hyphens (-) and underscores (_), and can not be more than 512 bytes."
                ),
            ))
        }
    }

    /// The uid.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IndexUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! settings {
    ($( $variant:ident => $path:literal, $update:ident; )*) => {
        /// One settings sub-route (`/indexes/{uid}/settings/{setting}`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Setting {
            $( #[doc = concat!("`", $path, "`")] $variant, )*
        }

        impl Setting {
            /// Every settings sub-route.
            pub const ALL: &'static [Setting] = &[$(Setting::$variant,)*];

            /// The path segment, e.g. `ranking-rules`.
            pub fn path(self) -> &'static str {
                match self { $(Setting::$variant => $path,)* }
            }

            /// The method that updates this setting: Meilisearch uses PUT for most, PATCH for the
            /// object-valued ones.
            pub fn update_method(self) -> Method {
                match self { $(Setting::$variant => Method::$update,)* }
            }

            /// Parses a path segment.
            pub fn from_path(segment: &str) -> Option<Setting> {
                match segment { $($path => Some(Setting::$variant),)* _ => None }
            }
        }
    };
}

settings! {
    Chat => "chat", PATCH;
    Dictionary => "dictionary", PUT;
    DisplayedAttributes => "displayed-attributes", PUT;
    DistinctAttribute => "distinct-attribute", PUT;
    Embedders => "embedders", PATCH;
    FacetSearch => "facet-search", PUT;
    Faceting => "faceting", PATCH;
    FilterableAttributes => "filterable-attributes", PUT;
    ForeignKeys => "foreign-keys", PUT;
    LocalizedAttributes => "localized-attributes", PUT;
    NonSeparatorTokens => "non-separator-tokens", PUT;
    Pagination => "pagination", PATCH;
    PrefixSearch => "prefix-search", PUT;
    ProximityPrecision => "proximity-precision", PUT;
    RankingRules => "ranking-rules", PUT;
    SearchCutoffMs => "search-cutoff-ms", PUT;
    SearchableAttributes => "searchable-attributes", PUT;
    SeparatorTokens => "separator-tokens", PUT;
    SortableAttributes => "sortable-attributes", PUT;
    StopWords => "stop-words", PUT;
    Synonyms => "synonyms", PUT;
    TypoTolerance => "typo-tolerance", PATCH;
    VectorStore => "vector-store", PATCH;
}

/// Miroir's admin routes (`/_miroir/*`), all behind the admin key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRoute {
    /// `GET /_miroir/ready`: readiness (task store reachable).
    Ready,
    /// Any other `/_miroir/...` path (the rest after `/_miroir/`, decoded, `/`-joined). Admin routes added
    /// later land here until they get their own variant; authentication is checked before the path is
    /// revealed to exist or not.
    Other {
        /// The request method.
        method: Method,
        /// The path below `/_miroir/`.
        path: String,
    },
}

/// Meilisearch features Miroir does not carry (Enterprise sharding, chats, dynamic search rules, template
/// rendering). They are recognised so they can be refused with a clear error instead of a bare 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnsupportedFeature {
    /// `/network`, `/network/control`: Enterprise sharding, which Miroir replaces.
    Network,
    /// `/chats/...`.
    Chats,
    /// `/dynamic-search-rules/...`.
    DynamicSearchRules,
    /// `/render-template`.
    RenderTemplate,
}

/// The variants that address one index, for [`Route::index_uid`] and [`Route::index_uid_mut`].
macro_rules! index_of {
    ($route:expr) => {{
        use Route::*;
        match $route {
            GetIndex(u)
            | UpdateIndex(u)
            | DeleteIndex(u)
            | GetDocuments(u)
            | AddDocuments(u)
            | UpdateDocuments(u)
            | DeleteAllDocuments(u)
            | GetDocument(u, _)
            | DeleteDocument(u, _)
            | DeleteDocumentsBatch(u)
            | DeleteDocumentsByFilter(u)
            | FetchDocuments(u)
            | EditDocuments(u)
            | SearchGet(u)
            | SearchPost(u)
            | FacetSearch(u)
            | SimilarGet(u)
            | SimilarPost(u)
            | GetSettings(u)
            | UpdateSettings(u)
            | ResetSettings(u)
            | GetSetting(u, _)
            | UpdateSetting(u, _)
            | ResetSetting(u, _)
            | IndexStats(u)
            | IndexFields(u)
            | CompactIndex(u) => Some(u),
            _ => None,
        }
    }};
}

/// A parsed request route. Variants are per method, so a handler never re-checks the method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /health` (public).
    Health,
    /// `GET /version`.
    Version,
    /// `GET /stats`.
    Stats,
    /// `GET /metrics`: Miroir's Prometheus metrics.
    Metrics,
    /// `GET /indexes`.
    ListIndexes,
    /// `POST /indexes`.
    CreateIndex,
    /// `GET /indexes/{uid}`.
    GetIndex(IndexUid),
    /// `PATCH /indexes/{uid}`.
    UpdateIndex(IndexUid),
    /// `DELETE /indexes/{uid}`.
    DeleteIndex(IndexUid),
    /// `GET /indexes/{uid}/documents`.
    GetDocuments(IndexUid),
    /// `POST /indexes/{uid}/documents` (add or replace).
    AddDocuments(IndexUid),
    /// `PUT /indexes/{uid}/documents` (add or update).
    UpdateDocuments(IndexUid),
    /// `DELETE /indexes/{uid}/documents` (clear all).
    DeleteAllDocuments(IndexUid),
    /// `GET /indexes/{uid}/documents/{id}`.
    GetDocument(IndexUid, String),
    /// `DELETE /indexes/{uid}/documents/{id}`.
    DeleteDocument(IndexUid, String),
    /// `POST /indexes/{uid}/documents/delete-batch`.
    DeleteDocumentsBatch(IndexUid),
    /// `POST /indexes/{uid}/documents/delete` (by filter).
    DeleteDocumentsByFilter(IndexUid),
    /// `POST /indexes/{uid}/documents/fetch`.
    FetchDocuments(IndexUid),
    /// `POST /indexes/{uid}/documents/edit` (by function).
    EditDocuments(IndexUid),
    /// `GET /indexes/{uid}/search`.
    SearchGet(IndexUid),
    /// `POST /indexes/{uid}/search`.
    SearchPost(IndexUid),
    /// `POST /indexes/{uid}/facet-search`.
    FacetSearch(IndexUid),
    /// `GET /indexes/{uid}/similar`.
    SimilarGet(IndexUid),
    /// `POST /indexes/{uid}/similar`.
    SimilarPost(IndexUid),
    /// `GET /indexes/{uid}/settings`.
    GetSettings(IndexUid),
    /// `PATCH /indexes/{uid}/settings`.
    UpdateSettings(IndexUid),
    /// `DELETE /indexes/{uid}/settings`.
    ResetSettings(IndexUid),
    /// `GET /indexes/{uid}/settings/{setting}`.
    GetSetting(IndexUid, Setting),
    /// `PUT` or `PATCH` (see [`Setting::update_method`]) `/indexes/{uid}/settings/{setting}`.
    UpdateSetting(IndexUid, Setting),
    /// `DELETE /indexes/{uid}/settings/{setting}`.
    ResetSetting(IndexUid, Setting),
    /// `GET /indexes/{uid}/stats`.
    IndexStats(IndexUid),
    /// `POST /indexes/{uid}/fields`.
    IndexFields(IndexUid),
    /// `POST /indexes/{uid}/compact`.
    CompactIndex(IndexUid),
    /// `POST /multi-search`.
    MultiSearch,
    /// `POST /swap-indexes`.
    SwapIndexes,
    /// `GET /tasks`.
    ListTasks,
    /// `DELETE /tasks`.
    DeleteTasks,
    /// `POST /tasks/cancel`.
    CancelTasks,
    /// `POST /tasks/compact`.
    CompactTasks,
    /// `GET /tasks/{uid}`.
    GetTask(u64),
    /// `GET /tasks/{uid}/documents`.
    GetTaskDocuments(u64),
    /// `GET /batches`.
    ListBatches,
    /// `GET /batches/{uid}`.
    GetBatch(u64),
    /// `GET /keys`.
    ListKeys,
    /// `POST /keys`.
    CreateKey,
    /// `GET /keys/{key}` (uid or key).
    GetKey(String),
    /// `PATCH /keys/{key}`.
    UpdateKey(String),
    /// `DELETE /keys/{key}`.
    DeleteKey(String),
    /// `POST /dumps`.
    CreateDump,
    /// `POST /snapshots`.
    CreateSnapshot,
    /// `GET /experimental-features`.
    GetExperimentalFeatures,
    /// `PATCH /experimental-features`.
    UpdateExperimentalFeatures,
    /// `GET /webhooks`.
    ListWebhooks,
    /// `POST /webhooks`.
    CreateWebhook,
    /// `GET /webhooks/{uuid}`.
    GetWebhook(String),
    /// `PATCH /webhooks/{uuid}`.
    UpdateWebhook(String),
    /// `DELETE /webhooks/{uuid}`.
    DeleteWebhook(String),
    /// `POST /logs/stream`.
    LogsStream,
    /// `DELETE /logs/stream`.
    LogsStreamStop,
    /// `POST /logs/stderr`.
    LogsStderr,
    /// `POST /export`.
    Export,
    /// A recognised Meilisearch feature Miroir does not carry (any method).
    Unsupported {
        /// Which feature.
        feature: UnsupportedFeature,
        /// The request method.
        method: Method,
        /// The decoded path, `/`-joined, starting with `/`.
        path: String,
    },
    /// `/_miroir/*`.
    Admin(AdminRoute),
}

/// Why a request has no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No such path (Meilisearch answers 404 with an empty body).
    NotFound,
    /// The path exists with other methods (405; `allowed` goes in the `Allow` header).
    MethodNotAllowed {
        /// The methods the path accepts.
        allowed: Vec<Method>,
    },
    /// A malformed path parameter, answered with this Meilisearch error.
    Invalid(MeiliError),
}

/// Picks the route for `method` among the path's options.
fn pick(method: &Method, options: Vec<(Method, Route)>) -> Result<Route, RouteError> {
    let allowed: Vec<Method> = options.iter().map(|(m, _)| m.clone()).collect();
    options
        .into_iter()
        .find(|(m, _)| m == method)
        .map(|(_, r)| r)
        .ok_or(RouteError::MethodNotAllowed { allowed })
}

fn decode(segment: &str) -> Result<String, String> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| percent_decode_str(segment).decode_utf8_lossy().into_owned())
}

fn index_uid(raw: &Result<String, String>) -> Result<IndexUid, RouteError> {
    match raw {
        Ok(s) => IndexUid::parse(s).map_err(RouteError::Invalid),
        Err(lossy) => Err(RouteError::Invalid(
            IndexUid::parse(lossy)
                .err()
                .unwrap_or_else(|| MeiliError::internal("non-UTF-8 index uid")),
        )),
    }
}

fn document_id(raw: &Result<String, String>) -> Result<String, RouteError> {
    raw.clone().map_err(|lossy| {
        RouteError::Invalid(MeiliError::invalid(
            400,
            "invalid_document_id",
            format!("Document identifier `{lossy}` is invalid. A document identifier can be of type integer or string, only composed of alphanumeric characters (a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be more than 511 bytes."),
        ))
    })
}

fn plain(raw: &Result<String, String>) -> String {
    match raw {
        Ok(s) | Err(s) => s.clone(),
    }
}

fn uid_u64(raw: &Result<String, String>, what: &str, code: &str) -> Result<u64, RouteError> {
    let s = plain(raw);
    s.parse::<u64>().map_err(|_| {
        RouteError::Invalid(MeiliError::invalid(
            400,
            code,
            format!("{what} uid `{s}` is invalid. It should only contain numeric characters."),
        ))
    })
}

impl Route {
    /// Parses a request. `path` may carry a query string, which is ignored.
    pub fn parse(method: &Method, path: &str) -> Result<Route, RouteError> {
        use Method as M;
        let path = path.split(['?', '#']).next().unwrap_or("");
        let raw: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let segs: Vec<Result<String, String>> = raw.iter().map(|s| decode(s)).collect();
        let lit: Vec<&str> = segs
            .iter()
            .map(|s| match s {
                Ok(s) => s.as_str(),
                Err(_) => "\u{fffd}",
            })
            .collect();
        let joined = || {
            let parts: Vec<String> = segs.iter().map(plain).collect();
            format!("/{}", parts.join("/"))
        };
        let unsupported = |feature| {
            Ok(Route::Unsupported {
                feature,
                method: method.clone(),
                path: joined(),
            })
        };
        match lit.as_slice() {
            ["health"] => pick(method, vec![(M::GET, Route::Health)]),
            ["version"] => pick(method, vec![(M::GET, Route::Version)]),
            ["stats"] => pick(method, vec![(M::GET, Route::Stats)]),
            ["metrics"] => pick(method, vec![(M::GET, Route::Metrics)]),
            ["indexes"] => pick(
                method,
                vec![(M::GET, Route::ListIndexes), (M::POST, Route::CreateIndex)],
            ),
            ["indexes", _, rest @ ..] => {
                let uid = index_uid(&segs[1])?;
                Self::parse_index(method, uid, rest, &segs[2..])
            }
            ["multi-search"] => pick(method, vec![(M::POST, Route::MultiSearch)]),
            ["swap-indexes"] => pick(method, vec![(M::POST, Route::SwapIndexes)]),
            ["tasks"] => pick(
                method,
                vec![(M::GET, Route::ListTasks), (M::DELETE, Route::DeleteTasks)],
            ),
            ["tasks", "cancel"] => pick(method, vec![(M::POST, Route::CancelTasks)]),
            ["tasks", "compact"] => pick(method, vec![(M::POST, Route::CompactTasks)]),
            ["tasks", _] => {
                pick(method, vec![(M::GET, Route::GetTask(0))])?;
                let uid = uid_u64(&segs[1], "Task", "invalid_task_uids")?;
                Ok(Route::GetTask(uid))
            }
            ["tasks", _, "documents"] => {
                pick(method, vec![(M::GET, Route::GetTaskDocuments(0))])?;
                let uid = uid_u64(&segs[1], "Task", "invalid_task_uids")?;
                Ok(Route::GetTaskDocuments(uid))
            }
            ["batches"] => pick(method, vec![(M::GET, Route::ListBatches)]),
            ["batches", _] => {
                pick(method, vec![(M::GET, Route::GetBatch(0))])?;
                let uid = uid_u64(&segs[1], "Batch", "invalid_batch_uids")?;
                Ok(Route::GetBatch(uid))
            }
            ["keys"] => pick(
                method,
                vec![(M::GET, Route::ListKeys), (M::POST, Route::CreateKey)],
            ),
            ["keys", _] => {
                let k = plain(&segs[1]);
                pick(
                    method,
                    vec![
                        (M::GET, Route::GetKey(k.clone())),
                        (M::PATCH, Route::UpdateKey(k.clone())),
                        (M::DELETE, Route::DeleteKey(k)),
                    ],
                )
            }
            ["dumps"] => pick(method, vec![(M::POST, Route::CreateDump)]),
            ["snapshots"] => pick(method, vec![(M::POST, Route::CreateSnapshot)]),
            ["experimental-features"] => pick(
                method,
                vec![
                    (M::GET, Route::GetExperimentalFeatures),
                    (M::PATCH, Route::UpdateExperimentalFeatures),
                ],
            ),
            ["webhooks"] => pick(
                method,
                vec![
                    (M::GET, Route::ListWebhooks),
                    (M::POST, Route::CreateWebhook),
                ],
            ),
            ["webhooks", _] => {
                let w = plain(&segs[1]);
                pick(
                    method,
                    vec![
                        (M::GET, Route::GetWebhook(w.clone())),
                        (M::PATCH, Route::UpdateWebhook(w.clone())),
                        (M::DELETE, Route::DeleteWebhook(w)),
                    ],
                )
            }
            ["logs", "stream"] => pick(
                method,
                vec![
                    (M::POST, Route::LogsStream),
                    (M::DELETE, Route::LogsStreamStop),
                ],
            ),
            ["logs", "stderr"] => pick(method, vec![(M::POST, Route::LogsStderr)]),
            ["export"] => pick(method, vec![(M::POST, Route::Export)]),
            ["network"] | ["network", "control"] => unsupported(UnsupportedFeature::Network),
            ["chats", ..] => unsupported(UnsupportedFeature::Chats),
            ["dynamic-search-rules", ..] => unsupported(UnsupportedFeature::DynamicSearchRules),
            ["render-template"] => unsupported(UnsupportedFeature::RenderTemplate),
            ["_miroir", "ready"] => pick(method, vec![(M::GET, Route::Admin(AdminRoute::Ready))]),
            ["_miroir", ..] => {
                let parts: Vec<String> = segs[1..].iter().map(plain).collect();
                Ok(Route::Admin(AdminRoute::Other {
                    method: method.clone(),
                    path: parts.join("/"),
                }))
            }
            _ => Err(RouteError::NotFound),
        }
    }

    fn parse_index(
        method: &Method,
        uid: IndexUid,
        rest: &[&str],
        segs: &[Result<String, String>],
    ) -> Result<Route, RouteError> {
        use Method as M;
        let u = || uid.clone();
        match rest {
            [] => pick(
                method,
                vec![
                    (M::GET, Route::GetIndex(u())),
                    (M::PATCH, Route::UpdateIndex(u())),
                    (M::DELETE, Route::DeleteIndex(u())),
                ],
            ),
            ["documents"] => pick(
                method,
                vec![
                    (M::GET, Route::GetDocuments(u())),
                    (M::POST, Route::AddDocuments(u())),
                    (M::PUT, Route::UpdateDocuments(u())),
                    (M::DELETE, Route::DeleteAllDocuments(u())),
                ],
            ),
            ["documents", "delete-batch"] => {
                pick(method, vec![(M::POST, Route::DeleteDocumentsBatch(u()))])
            }
            ["documents", "delete"] => {
                pick(method, vec![(M::POST, Route::DeleteDocumentsByFilter(u()))])
            }
            ["documents", "fetch"] => pick(method, vec![(M::POST, Route::FetchDocuments(u()))]),
            ["documents", "edit"] => pick(method, vec![(M::POST, Route::EditDocuments(u()))]),
            ["documents", _] => {
                let id = document_id(&segs[1])?;
                pick(
                    method,
                    vec![
                        (M::GET, Route::GetDocument(u(), id.clone())),
                        (M::DELETE, Route::DeleteDocument(u(), id)),
                    ],
                )
            }
            ["search"] => pick(
                method,
                vec![
                    (M::GET, Route::SearchGet(u())),
                    (M::POST, Route::SearchPost(u())),
                ],
            ),
            ["facet-search"] => pick(method, vec![(M::POST, Route::FacetSearch(u()))]),
            ["similar"] => pick(
                method,
                vec![
                    (M::GET, Route::SimilarGet(u())),
                    (M::POST, Route::SimilarPost(u())),
                ],
            ),
            ["settings"] => pick(
                method,
                vec![
                    (M::GET, Route::GetSettings(u())),
                    (M::PATCH, Route::UpdateSettings(u())),
                    (M::DELETE, Route::ResetSettings(u())),
                ],
            ),
            ["settings", name] => {
                let setting = Setting::from_path(name).ok_or(RouteError::NotFound)?;
                pick(
                    method,
                    vec![
                        (M::GET, Route::GetSetting(u(), setting)),
                        (setting.update_method(), Route::UpdateSetting(u(), setting)),
                        (M::DELETE, Route::ResetSetting(u(), setting)),
                    ],
                )
            }
            ["stats"] => pick(method, vec![(M::GET, Route::IndexStats(u()))]),
            ["fields"] => pick(method, vec![(M::POST, Route::IndexFields(u()))]),
            ["compact"] => pick(method, vec![(M::POST, Route::CompactIndex(u()))]),
            _ => Err(RouteError::NotFound),
        }
    }

    /// True for the routes served without any key (only `/health`, as in Meilisearch).
    pub fn is_public(&self) -> bool {
        matches!(self, Route::Health)
    }

    /// The permission an API key needs for this client route (Meilisearch's `ActionPolicy` of the
    /// route), and the index the route names. `None` for the public and admin routes.
    pub fn action(&self) -> Option<(Action, Option<&str>)> {
        use Route::*;
        let index = self.index_uid().map(IndexUid::as_str);
        let action = match self {
            Health | Admin(_) => return None,
            Version => Action::Version,
            Stats | IndexStats(_) => Action::StatsGet,
            Metrics | LogsStream | LogsStreamStop | LogsStderr => Action::MetricsGet,
            ListIndexes | GetIndex(_) => Action::IndexesGet,
            CreateIndex => Action::IndexesCreate,
            UpdateIndex(_) => Action::IndexesUpdate,
            DeleteIndex(_) => Action::IndexesDelete,
            SwapIndexes => Action::IndexesSwap,
            CompactIndex(_) => Action::IndexesCompact,
            IndexFields(_) => Action::FieldsPost,
            GetDocuments(_) | GetDocument(..) | FetchDocuments(_) => Action::DocumentsGet,
            AddDocuments(_) | UpdateDocuments(_) | EditDocuments(_) => Action::DocumentsAdd,
            DeleteAllDocuments(_)
            | DeleteDocument(..)
            | DeleteDocumentsBatch(_)
            | DeleteDocumentsByFilter(_) => Action::DocumentsDelete,
            SearchGet(_) | SearchPost(_) | FacetSearch(_) | SimilarGet(_) | SimilarPost(_)
            | MultiSearch => Action::Search,
            GetSettings(_) | GetSetting(..) => Action::SettingsGet,
            UpdateSettings(_) | UpdateSetting(..) | ResetSettings(_) | ResetSetting(..) => {
                Action::SettingsUpdate
            }
            ListTasks | GetTask(_) | GetTaskDocuments(_) | ListBatches | GetBatch(_) => {
                Action::TasksGet
            }
            DeleteTasks => Action::TasksDelete,
            CancelTasks => Action::TasksCancel,
            CompactTasks => Action::TasksCompact,
            ListKeys | GetKey(_) => Action::KeysGet,
            CreateKey => Action::KeysCreate,
            UpdateKey(_) => Action::KeysUpdate,
            DeleteKey(_) => Action::KeysDelete,
            CreateDump => Action::DumpsCreate,
            CreateSnapshot => Action::SnapshotsCreate,
            GetExperimentalFeatures => Action::ExperimentalGet,
            UpdateExperimentalFeatures => Action::ExperimentalUpdate,
            ListWebhooks | GetWebhook(_) => Action::WebhooksGet,
            CreateWebhook => Action::WebhooksCreate,
            UpdateWebhook(_) => Action::WebhooksUpdate,
            DeleteWebhook(_) => Action::WebhooksDelete,
            Export => Action::Export,
            // Answered 501 whatever the key; the permission only decides whether a key learns that.
            Unsupported {
                feature, method, ..
            } => match feature {
                UnsupportedFeature::Network if *method == Method::GET => Action::NetworkGet,
                UnsupportedFeature::Network => Action::NetworkUpdate,
                UnsupportedFeature::Chats => Action::ChatCompletions,
                UnsupportedFeature::DynamicSearchRules | UnsupportedFeature::RenderTemplate => {
                    Action::SettingsGet
                }
            },
        };
        Some((action, index))
    }

    /// True for `/_miroir/*`, which needs the admin key.
    pub fn is_admin(&self) -> bool {
        matches!(self, Route::Admin(_))
    }

    /// The index the route addresses, if any.
    pub fn index_uid(&self) -> Option<&IndexUid> {
        index_of!(self)
    }

    /// The index the route addresses, to be replaced (by an alias's target).
    pub fn index_uid_mut(&mut self) -> Option<&mut IndexUid> {
        index_of!(self)
    }

    /// The route class used as the `route` label of the request metrics: a small fixed set, so label
    /// cardinality stays bounded whatever clients send.
    pub fn class(&self) -> &'static str {
        use Route::*;
        match self {
            Health => "health",
            Version => "version",
            Metrics => "metrics",
            Stats | IndexStats(_) => "stats",
            ListIndexes | CreateIndex | GetIndex(_) | UpdateIndex(_) | DeleteIndex(_)
            | SwapIndexes | CompactIndex(_) | IndexFields(_) => "indexes",
            GetDocuments(_) | GetDocument(..) | FetchDocuments(_) => "documents_read",
            AddDocuments(_)
            | UpdateDocuments(_)
            | DeleteAllDocuments(_)
            | DeleteDocument(..)
            | DeleteDocumentsBatch(_)
            | DeleteDocumentsByFilter(_)
            | EditDocuments(_) => "documents_write",
            SearchGet(_) | SearchPost(_) | MultiSearch | SimilarGet(_) | SimilarPost(_) => "search",
            FacetSearch(_) => "facet_search",
            GetSettings(_) | UpdateSettings(_) | ResetSettings(_) | GetSetting(..)
            | UpdateSetting(..) | ResetSetting(..) => "settings",
            ListTasks | DeleteTasks | CancelTasks | CompactTasks | GetTask(_)
            | GetTaskDocuments(_) => "tasks",
            ListBatches | GetBatch(_) => "batches",
            ListKeys | CreateKey | GetKey(_) | UpdateKey(_) | DeleteKey(_) => "keys",
            ListWebhooks | CreateWebhook | GetWebhook(_) | UpdateWebhook(_) | DeleteWebhook(_) => {
                "webhooks"
            }
            CreateDump | CreateSnapshot | Export => "maintenance",
            GetExperimentalFeatures
            | UpdateExperimentalFeatures
            | LogsStream
            | LogsStreamStop
            | LogsStderr => "instance",
            Unsupported { .. } => "unsupported",
            Admin(_) => "admin",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Method as M;

    fn ok(m: Method, p: &str) -> Route {
        Route::parse(&m, p).unwrap_or_else(|e| panic!("{m} {p}: {e:?}"))
    }

    fn uid(s: &str) -> IndexUid {
        IndexUid::parse(s).unwrap()
    }

    #[test]
    fn top_level_routes() {
        assert_eq!(ok(M::GET, "/health"), Route::Health);
        assert_eq!(ok(M::GET, "/version"), Route::Version);
        assert_eq!(ok(M::GET, "/stats"), Route::Stats);
        assert_eq!(ok(M::GET, "/metrics"), Route::Metrics);
        assert_eq!(ok(M::GET, "/indexes"), Route::ListIndexes);
        assert_eq!(ok(M::POST, "/indexes"), Route::CreateIndex);
        assert_eq!(ok(M::POST, "/multi-search"), Route::MultiSearch);
        assert_eq!(ok(M::POST, "/swap-indexes"), Route::SwapIndexes);
        assert_eq!(ok(M::GET, "/tasks"), Route::ListTasks);
        assert_eq!(ok(M::DELETE, "/tasks"), Route::DeleteTasks);
        assert_eq!(ok(M::POST, "/tasks/cancel"), Route::CancelTasks);
        assert_eq!(ok(M::POST, "/tasks/compact"), Route::CompactTasks);
        assert_eq!(ok(M::GET, "/tasks/42"), Route::GetTask(42));
        assert_eq!(
            ok(M::GET, "/tasks/42/documents"),
            Route::GetTaskDocuments(42)
        );
        assert_eq!(ok(M::GET, "/batches"), Route::ListBatches);
        assert_eq!(ok(M::GET, "/batches/7"), Route::GetBatch(7));
        assert_eq!(ok(M::GET, "/keys"), Route::ListKeys);
        assert_eq!(ok(M::POST, "/keys"), Route::CreateKey);
        assert_eq!(ok(M::GET, "/keys/abc"), Route::GetKey("abc".into()));
        assert_eq!(ok(M::PATCH, "/keys/abc"), Route::UpdateKey("abc".into()));
        assert_eq!(ok(M::DELETE, "/keys/abc"), Route::DeleteKey("abc".into()));
        assert_eq!(ok(M::POST, "/dumps"), Route::CreateDump);
        assert_eq!(ok(M::POST, "/snapshots"), Route::CreateSnapshot);
        assert_eq!(
            ok(M::GET, "/experimental-features"),
            Route::GetExperimentalFeatures
        );
        assert_eq!(
            ok(M::PATCH, "/experimental-features"),
            Route::UpdateExperimentalFeatures
        );
        assert_eq!(ok(M::GET, "/webhooks"), Route::ListWebhooks);
        assert_eq!(ok(M::POST, "/webhooks"), Route::CreateWebhook);
        assert_eq!(ok(M::GET, "/webhooks/u-1"), Route::GetWebhook("u-1".into()));
        assert_eq!(
            ok(M::PATCH, "/webhooks/u-1"),
            Route::UpdateWebhook("u-1".into())
        );
        assert_eq!(
            ok(M::DELETE, "/webhooks/u-1"),
            Route::DeleteWebhook("u-1".into())
        );
        assert_eq!(ok(M::POST, "/logs/stream"), Route::LogsStream);
        assert_eq!(ok(M::DELETE, "/logs/stream"), Route::LogsStreamStop);
        assert_eq!(ok(M::POST, "/logs/stderr"), Route::LogsStderr);
        assert_eq!(ok(M::POST, "/export"), Route::Export);
        assert_eq!(
            ok(M::GET, "/_miroir/ready"),
            Route::Admin(AdminRoute::Ready)
        );
        assert_eq!(
            ok(M::POST, "/_miroir/nodes/meili%2D0"),
            Route::Admin(AdminRoute::Other {
                method: M::POST,
                path: "nodes/meili-0".into()
            })
        );
        assert_eq!(
            ok(M::GET, "/_miroir"),
            Route::Admin(AdminRoute::Other {
                method: M::GET,
                path: String::new()
            })
        );
    }

    #[test]
    fn index_routes() {
        let m = || uid("movies");
        assert_eq!(ok(M::GET, "/indexes/movies"), Route::GetIndex(m()));
        assert_eq!(ok(M::PATCH, "/indexes/movies"), Route::UpdateIndex(m()));
        assert_eq!(ok(M::DELETE, "/indexes/movies"), Route::DeleteIndex(m()));
        assert_eq!(
            ok(M::GET, "/indexes/movies/documents"),
            Route::GetDocuments(m())
        );
        assert_eq!(
            ok(M::POST, "/indexes/movies/documents"),
            Route::AddDocuments(m())
        );
        assert_eq!(
            ok(M::PUT, "/indexes/movies/documents"),
            Route::UpdateDocuments(m())
        );
        assert_eq!(
            ok(M::DELETE, "/indexes/movies/documents"),
            Route::DeleteAllDocuments(m())
        );
        assert_eq!(
            ok(M::GET, "/indexes/movies/documents/42"),
            Route::GetDocument(m(), "42".into())
        );
        assert_eq!(
            ok(M::DELETE, "/indexes/movies/documents/a-b_c"),
            Route::DeleteDocument(m(), "a-b_c".into())
        );
        assert_eq!(
            ok(M::POST, "/indexes/movies/documents/delete-batch"),
            Route::DeleteDocumentsBatch(m())
        );
        assert_eq!(
            ok(M::POST, "/indexes/movies/documents/delete"),
            Route::DeleteDocumentsByFilter(m())
        );
        assert_eq!(
            ok(M::POST, "/indexes/movies/documents/fetch"),
            Route::FetchDocuments(m())
        );
        assert_eq!(
            ok(M::POST, "/indexes/movies/documents/edit"),
            Route::EditDocuments(m())
        );
        assert_eq!(ok(M::GET, "/indexes/movies/search"), Route::SearchGet(m()));
        assert_eq!(
            ok(M::POST, "/indexes/movies/search"),
            Route::SearchPost(m())
        );
        assert_eq!(
            ok(M::POST, "/indexes/movies/facet-search"),
            Route::FacetSearch(m())
        );
        assert_eq!(
            ok(M::GET, "/indexes/movies/similar"),
            Route::SimilarGet(m())
        );
        assert_eq!(
            ok(M::POST, "/indexes/movies/similar"),
            Route::SimilarPost(m())
        );
        assert_eq!(
            ok(M::GET, "/indexes/movies/settings"),
            Route::GetSettings(m())
        );
        assert_eq!(
            ok(M::PATCH, "/indexes/movies/settings"),
            Route::UpdateSettings(m())
        );
        assert_eq!(
            ok(M::DELETE, "/indexes/movies/settings"),
            Route::ResetSettings(m())
        );
        assert_eq!(ok(M::GET, "/indexes/movies/stats"), Route::IndexStats(m()));
        assert_eq!(
            ok(M::POST, "/indexes/movies/fields"),
            Route::IndexFields(m())
        );
        assert_eq!(
            ok(M::POST, "/indexes/movies/compact"),
            Route::CompactIndex(m())
        );
    }

    #[test]
    fn every_settings_sub_route() {
        // The 22 of the API listing plus `vector-store`, which Meilisearch's settings table also has.
        assert_eq!(Setting::ALL.len(), 23);
        for s in Setting::ALL {
            let p = format!("/indexes/i/settings/{}", s.path());
            assert_eq!(ok(M::GET, &p), Route::GetSetting(uid("i"), *s));
            assert_eq!(
                ok(s.update_method(), &p),
                Route::UpdateSetting(uid("i"), *s)
            );
            assert_eq!(ok(M::DELETE, &p), Route::ResetSetting(uid("i"), *s));
            assert_eq!(Setting::from_path(s.path()), Some(*s));
            let other = if s.update_method() == M::PUT {
                M::PATCH
            } else {
                M::PUT
            };
            assert!(matches!(
                Route::parse(&other, &p),
                Err(RouteError::MethodNotAllowed { .. })
            ));
            assert_eq!(ok(M::GET, &p).class(), "settings");
        }
        assert_eq!(Setting::RankingRules.update_method(), M::PUT);
        assert_eq!(Setting::TypoTolerance.update_method(), M::PATCH);
        assert_eq!(
            Route::parse(&M::GET, "/indexes/i/settings/nope"),
            Err(RouteError::NotFound)
        );
    }

    #[test]
    fn unsupported_features_are_recognised() {
        for (p, f) in [
            ("/network", UnsupportedFeature::Network),
            ("/network/control", UnsupportedFeature::Network),
            ("/chats", UnsupportedFeature::Chats),
            ("/chats/ws/chat/completions", UnsupportedFeature::Chats),
            (
                "/dynamic-search-rules/r1",
                UnsupportedFeature::DynamicSearchRules,
            ),
            ("/render-template", UnsupportedFeature::RenderTemplate),
        ] {
            match ok(M::POST, p) {
                Route::Unsupported {
                    feature,
                    method,
                    path,
                } => {
                    assert_eq!(feature, f);
                    assert_eq!(method, M::POST);
                    assert_eq!(path, p);
                }
                other => panic!("{p}: {other:?}"),
            }
        }
    }

    #[test]
    fn path_normalisation_and_decoding() {
        assert_eq!(ok(M::GET, "/health/"), Route::Health);
        assert_eq!(
            ok(M::GET, "//indexes//movies/"),
            Route::GetIndex(uid("movies"))
        );
        assert_eq!(ok(M::GET, "/indexes?limit=5"), Route::ListIndexes);
        assert_eq!(ok(M::GET, "/ind%65xes"), Route::ListIndexes);
        assert_eq!(
            ok(M::GET, "/indexes/mo%76ies"),
            Route::GetIndex(uid("movies"))
        );
        // %2F stays inside the document id.
        assert_eq!(
            ok(M::GET, "/indexes/movies/documents/a%2Fb"),
            Route::GetDocument(uid("movies"), "a/b".into())
        );
        assert_eq!(
            ok(M::GET, "/indexes/movies/documents/caf%C3%A9"),
            Route::GetDocument(uid("movies"), "café".into())
        );
        assert!(matches!(
            Route::parse(&M::GET, "/indexes/movies/documents/%FF"),
            Err(RouteError::Invalid(e)) if e.code == "invalid_document_id"
        ));
    }

    #[test]
    fn bad_index_uids_are_meilisearch_errors() {
        for bad in ["bad%20uid!", "caf%C3%A9", "a.b", "%FF"] {
            match Route::parse(&M::GET, &format!("/indexes/{bad}/search")) {
                Err(RouteError::Invalid(e)) => {
                    assert_eq!(e.code, "invalid_index_uid");
                    assert_eq!(e.status, 400);
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let e = IndexUid::parse("bad uid!").unwrap_err();
        assert_eq!(
            e.message,
            "`bad uid!` is not a valid index uid. Index uid can be an integer or a string containing only alphanumeric characters, hyphens (-) and underscores (_), and can not be more than 512 bytes."
        );
        assert!(IndexUid::parse(&"a".repeat(512)).is_ok());
        assert!(IndexUid::parse(&"a".repeat(513)).is_err());
        assert!(IndexUid::parse("").is_err());
        assert_eq!(uid("Movies_2-x").as_str(), "Movies_2-x");
        assert_eq!(uid("x").to_string(), "x");
    }

    #[test]
    fn bad_task_and_batch_uids() {
        match Route::parse(&M::GET, "/tasks/abc") {
            Err(RouteError::Invalid(e)) => {
                assert_eq!(e.code, "invalid_task_uids");
                assert_eq!(
                    e.message,
                    "Task uid `abc` is invalid. It should only contain numeric characters."
                );
            }
            other => panic!("{other:?}"),
        }
        match Route::parse(&M::GET, "/batches/-1") {
            Err(RouteError::Invalid(e)) => assert_eq!(e.code, "invalid_batch_uids"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Route::parse(&M::GET, "/tasks/x/documents"),
            Err(RouteError::Invalid(_))
        ));
        // The method is checked before the uid, like actix resource matching.
        assert!(matches!(
            Route::parse(&M::POST, "/tasks/abc"),
            Err(RouteError::MethodNotAllowed { .. })
        ));
    }

    #[test]
    fn fixed_segments_win_and_wrong_methods_are_405() {
        for (m, p, allowed) in [
            (M::GET, "/indexes/movies/documents/fetch", vec![M::POST]),
            (M::GET, "/tasks/cancel", vec![M::POST]),
            (M::POST, "/health", vec![M::GET]),
            (M::PUT, "/indexes", vec![M::GET, M::POST]),
            (
                M::POST,
                "/indexes/movies",
                vec![M::GET, M::PATCH, M::DELETE],
            ),
            (
                M::PUT,
                "/indexes/movies/settings",
                vec![M::GET, M::PATCH, M::DELETE],
            ),
            (M::POST, "/_miroir/ready", vec![M::GET]),
            (M::GET, "/logs/stream", vec![M::POST, M::DELETE]),
        ] {
            assert_eq!(
                Route::parse(&m, p),
                Err(RouteError::MethodNotAllowed { allowed }),
                "{m} {p}"
            );
        }
    }

    #[test]
    fn unknown_paths_are_404() {
        for p in [
            "/",
            "",
            "/nope",
            "/indexes/movies/nope",
            "/indexes/movies/documents/1/extra",
            "/tasks/1/2",
            "/keys/a/b",
            "/healthz",
            "/logs",
        ] {
            assert_eq!(Route::parse(&M::GET, p), Err(RouteError::NotFound), "{p}");
        }
    }

    #[test]
    fn classification() {
        assert!(ok(M::GET, "/health").is_public());
        assert!(!ok(M::GET, "/version").is_public());
        assert!(ok(M::GET, "/_miroir/ready").is_admin());
        assert!(!ok(M::GET, "/metrics").is_admin());
        assert_eq!(
            ok(M::POST, "/indexes/m/search").index_uid(),
            Some(&uid("m"))
        );
        assert_eq!(ok(M::GET, "/tasks").index_uid(), None);
        assert_eq!(
            ok(M::POST, "/indexes/m/documents").class(),
            "documents_write"
        );
        assert_eq!(
            ok(M::GET, "/indexes/m/documents/1").class(),
            "documents_read"
        );
        assert_eq!(ok(M::POST, "/multi-search").class(), "search");
        assert_eq!(ok(M::GET, "/_miroir/ready").class(), "admin");
        assert_eq!(ok(M::GET, "/network").class(), "unsupported");
    }
}
