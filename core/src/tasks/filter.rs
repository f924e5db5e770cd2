//! `GET /tasks` filtering and pagination, and the filter validation of `POST /tasks/cancel` and
//! `DELETE /tasks`, with Meilisearch's parameters, error codes and messages.
//!
//! Parsing takes the already percent-decoded query pairs in order and stops at the first error, as
//! Meilisearch does. List values are comma separated (empty items skipped, items not trimmed, as
//! Meilisearch's `serde_cs`); `*` anywhere in
//! a list, or as a date, means "no filter on this parameter" (but still counts as a filter for the
//! `missing_task_filters` check, as in Meilisearch). Dates are RFC 3339 or `YYYY-MM-DD` (midnight UTC; for
//! `after*` parameters the next midnight, since the whole day is meant). All date bounds are exclusive,
//! and a task without `startedAt`/`finishedAt` does not match a bound on it.
//!
//! `indexUids` also matches an `indexSwap` task naming the index in its `details.swaps`, as Meilisearch
//! registers swaps under both indexes. The list response is `{results, total, limit, from, next}`:
//! newest first (ascending uids with `reverse=true`), `from` the first uid shown, `next` the uid to pass
//! as `from` for the next page (`null` at the end), `total` the number of matching tasks regardless of
//! `from` and `limit`.

use super::time::{parse_date, parse_rfc3339, UnixNanos};
use super::{TaskStatus, TaskType, TaskView};
use crate::error::MeiliError;
use serde_json::{Map, Value};

/// The default page size of `GET /tasks`.
pub const DEFAULT_LIMIT: u32 = 20;

const NANOS_PER_DAY: UnixNanos = 86_400 * 1_000_000_000;

/// Which route the query pairs come from: they accept different parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskQueryKind {
    /// `GET /tasks`.
    List,
    /// `POST /tasks/cancel`.
    Cancel,
    /// `DELETE /tasks`.
    Delete,
}

const LIST_PARAMS: [&str; 15] = [
    "limit",
    "from",
    "reverse",
    "batchUids",
    "uids",
    "canceledBy",
    "types",
    "statuses",
    "indexUids",
    "afterEnqueuedAt",
    "beforeEnqueuedAt",
    "afterStartedAt",
    "beforeStartedAt",
    "afterFinishedAt",
    "beforeFinishedAt",
];

/// A parsed task query. `None` means "no filter on this field".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFilter {
    /// Page size (`GET /tasks` only; default 20).
    pub limit: u32,
    /// Start of the page (`GET /tasks` only).
    pub from: Option<u64>,
    /// Oldest first (`GET /tasks` only).
    pub reverse: bool,
    /// `uids`.
    pub uids: Option<Vec<u64>>,
    /// `batchUids`.
    pub batch_uids: Option<Vec<u64>>,
    /// `canceledBy`.
    pub canceled_by: Option<Vec<u64>>,
    /// `types`.
    pub types: Option<Vec<TaskType>>,
    /// `statuses`.
    pub statuses: Option<Vec<TaskStatus>>,
    /// `indexUids`.
    pub index_uids: Option<Vec<String>>,
    /// `afterEnqueuedAt` (exclusive).
    pub after_enqueued_at: Option<UnixNanos>,
    /// `beforeEnqueuedAt` (exclusive).
    pub before_enqueued_at: Option<UnixNanos>,
    /// `afterStartedAt` (exclusive).
    pub after_started_at: Option<UnixNanos>,
    /// `beforeStartedAt` (exclusive).
    pub before_started_at: Option<UnixNanos>,
    /// `afterFinishedAt` (exclusive).
    pub after_finished_at: Option<UnixNanos>,
    /// `beforeFinishedAt` (exclusive).
    pub before_finished_at: Option<UnixNanos>,
    /// Whether any filter parameter (other than `limit`/`from`/`reverse`) was given, even `*`.
    pub has_filters: bool,
}

impl Default for TaskFilter {
    fn default() -> Self {
        TaskFilter {
            limit: DEFAULT_LIMIT,
            from: None,
            reverse: false,
            uids: None,
            batch_uids: None,
            canceled_by: None,
            types: None,
            statuses: None,
            index_uids: None,
            after_enqueued_at: None,
            before_enqueued_at: None,
            after_started_at: None,
            before_started_at: None,
            after_finished_at: None,
            before_finished_at: None,
            has_filters: false,
        }
    }
}

fn param_error(code: &str, param: &str, msg: &str) -> MeiliError {
    MeiliError::invalid(
        400,
        code,
        format!("Invalid value in parameter `{param}`: {msg}"),
    )
}

fn positive_integer(s: &str) -> Result<u64, String> {
    s.parse::<u32>()
        .map(u64::from)
        .map_err(|_| format!("could not parse `{s}` as a positive integer"))
}

/// Meilisearch's index uid rule: 1 to 512 bytes of ASCII alphanumerics, `-` and `_`.
pub fn is_valid_index_uid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 512
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses a comma-separated list; `Ok(None)` when it contains `*`. Errors name `param[i]` when the list
/// has several items, as Meilisearch does.
fn parse_list<T>(
    value: &str,
    param: &str,
    code: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<Vec<T>>, MeiliError> {
    let items: Vec<&str> = value.split(',').filter(|s| !s.is_empty()).collect();
    let mut out = Vec::with_capacity(items.len());
    let mut star = false;
    for (i, item) in items.iter().enumerate() {
        if *item == "*" {
            star = true;
            continue;
        }
        match parse(item) {
            Ok(v) => out.push(v),
            Err(msg) => {
                let location = if items.len() > 1 {
                    format!("{param}[{i}]")
                } else {
                    param.to_string()
                };
                return Err(param_error(code, &location, &msg));
            }
        }
    }
    Ok(if star { None } else { Some(out) })
}

fn parse_date_param(
    value: &str,
    param: &str,
    after: bool,
) -> Result<Option<UnixNanos>, MeiliError> {
    if value == "*" {
        return Ok(None);
    }
    let code = format!("invalid_task_{}", snake(param));
    let t = match parse_rfc3339(value) {
        Some(t) => t,
        None => match parse_date(value) {
            Some(midnight) if after => midnight + NANOS_PER_DAY,
            Some(midnight) => midnight,
            None => {
                return Err(param_error(
                    &code,
                    param,
                    &format!(
                        "`{value}` is an invalid date-time. It should follow the YYYY-MM-DD or RFC 3339 date-time format."
                    ),
                ))
            }
        },
    };
    Ok(Some(t))
}

/// `afterEnqueuedAt` → `after_enqueued_at`.
fn snake(camel: &str) -> String {
    let mut out = String::new();
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn backticked(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl TaskFilter {
    /// Parses `GET /tasks` query pairs.
    pub fn from_list_query<I, K, V>(pairs: I) -> Result<Self, MeiliError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Self::parse(pairs, TaskQueryKind::List)
    }

    /// Parses `POST /tasks/cancel` (`TaskQueryKind::Cancel`) or `DELETE /tasks`
    /// (`TaskQueryKind::Delete`) query pairs; `missing_task_filters` when none is given.
    pub fn from_cancel_or_delete_query<I, K, V>(
        pairs: I,
        kind: TaskQueryKind,
    ) -> Result<Self, MeiliError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let f = Self::parse(pairs, kind)?;
        if kind != TaskQueryKind::List && !f.has_filters {
            let action = if kind == TaskQueryKind::Cancel {
                "cancel"
            } else {
                "delete"
            };
            return Err(MeiliError::invalid(
                400,
                "missing_task_filters",
                format!(
                    "Query parameters to filter the tasks to {action} are missing. Available query parameters are: `uids`, `indexUids`, `statuses`, `types`, `canceledBy`, `beforeEnqueuedAt`, `afterEnqueuedAt`, `beforeStartedAt`, `afterStartedAt`, `beforeFinishedAt`, `afterFinishedAt`."
                ),
            ));
        }
        Ok(f)
    }

    fn parse<I, K, V>(pairs: I, kind: TaskQueryKind) -> Result<Self, MeiliError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let allowed: &[&str] = if kind == TaskQueryKind::List {
            &LIST_PARAMS
        } else {
            &LIST_PARAMS[3..]
        };
        let mut f = TaskFilter::default();
        for (k, v) in pairs {
            let (key, value) = (k.as_ref(), v.as_ref());
            if !allowed.contains(&key) {
                let expected = if kind == TaskQueryKind::List {
                    backticked(allowed)
                } else {
                    // Cancel/delete list `uids` before `batchUids`, following their struct order.
                    backticked(&[
                        "uids",
                        "batchUids",
                        "canceledBy",
                        "types",
                        "statuses",
                        "indexUids",
                        "afterEnqueuedAt",
                        "beforeEnqueuedAt",
                        "afterStartedAt",
                        "beforeStartedAt",
                        "afterFinishedAt",
                        "beforeFinishedAt",
                    ])
                };
                return Err(MeiliError::invalid(
                    400,
                    "bad_request",
                    format!("Unknown parameter `{key}`: expected one of {expected}"),
                ));
            }
            match key {
                "limit" => {
                    f.limit = value.parse::<u32>().map_err(|_| {
                        param_error(
                            "invalid_task_limit",
                            "limit",
                            &format!("could not parse `{value}` as a positive integer"),
                        )
                    })?;
                }
                "from" => {
                    f.from = Some(
                        positive_integer(value)
                            .map_err(|m| param_error("invalid_task_from", "from", &m))?,
                    );
                }
                "reverse" => {
                    f.reverse = match value {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(param_error(
                                "invalid_task_reverse",
                                "reverse",
                                &format!("could not parse `{value}` as a boolean, expected either `true` or `false`"),
                            ))
                        }
                    };
                }
                "uids" => f.uids = parse_list(value, key, "invalid_task_uids", positive_integer)?,
                "batchUids" => {
                    f.batch_uids = parse_list(value, key, "invalid_batch_uids", positive_integer)?
                }
                "canceledBy" => {
                    f.canceled_by =
                        parse_list(value, key, "invalid_task_canceled_by", positive_integer)?
                }
                "types" => {
                    f.types = parse_list(value, key, "invalid_task_types", |s| {
                        TaskType::parse(s).ok_or_else(|| {
                            format!(
                                "`{s}` is not a valid task type. Available types are {}.",
                                backticked(&TaskType::ALL.map(TaskType::as_str))
                            )
                        })
                    })?
                }
                "statuses" => {
                    f.statuses = parse_list(value, key, "invalid_task_statuses", |s| {
                        TaskStatus::parse(s).ok_or_else(|| {
                            format!(
                                "`{s}` is not a valid task status. Available statuses are {}.",
                                backticked(&TaskStatus::ALL.map(TaskStatus::as_str))
                            )
                        })
                    })?
                }
                "indexUids" => {
                    f.index_uids = parse_list(value, key, "invalid_index_uid", |s| {
                        if is_valid_index_uid(s) {
                            Ok(s.to_string())
                        } else {
                            Err(format!("`{s}` is not a valid index uid. Index uid can be an integer or a string containing only alphanumeric characters, hyphens (-) and underscores (_), and can not be more than 512 bytes."))
                        }
                    })?
                }
                "afterEnqueuedAt" => f.after_enqueued_at = parse_date_param(value, key, true)?,
                "beforeEnqueuedAt" => f.before_enqueued_at = parse_date_param(value, key, false)?,
                "afterStartedAt" => f.after_started_at = parse_date_param(value, key, true)?,
                "beforeStartedAt" => f.before_started_at = parse_date_param(value, key, false)?,
                "afterFinishedAt" => f.after_finished_at = parse_date_param(value, key, true)?,
                "beforeFinishedAt" => f.before_finished_at = parse_date_param(value, key, false)?,
                _ => {}
            }
            if !matches!(key, "limit" | "from" | "reverse") {
                f.has_filters = true;
            }
        }
        Ok(f)
    }

    /// Whether a task passes every filter (ignores `from`, `limit` and `reverse`).
    pub fn matches(&self, t: &TaskView) -> bool {
        fn within(
            v: Option<UnixNanos>,
            after: Option<UnixNanos>,
            before: Option<UnixNanos>,
        ) -> bool {
            if after.is_none() && before.is_none() {
                return true;
            }
            let Some(v) = v else {
                return false;
            };
            after.is_none_or(|a| v > a) && before.is_none_or(|b| v < b)
        }
        let in_list = |list: &Option<Vec<u64>>, v: Option<u64>| {
            list.as_ref()
                .is_none_or(|l| v.is_some_and(|v| l.contains(&v)))
        };
        in_list(&self.uids, Some(t.uid))
            && in_list(&self.batch_uids, t.batch_uid)
            && in_list(&self.canceled_by, t.canceled_by)
            && self.types.as_ref().is_none_or(|l| l.contains(&t.task_type))
            && self.statuses.as_ref().is_none_or(|l| l.contains(&t.status))
            && self
                .index_uids
                .as_ref()
                .is_none_or(|l| task_indexes(t).iter().any(|i| l.contains(i)))
            && within(
                Some(t.enqueued_at),
                self.after_enqueued_at,
                self.before_enqueued_at,
            )
            && within(t.started_at, self.after_started_at, self.before_started_at)
            && within(
                t.finished_at,
                self.after_finished_at,
                self.before_finished_at,
            )
    }

    /// The `GET /tasks` response over `tasks` (in any order; uids are unique):
    /// `{results, total, limit, from, next}`.
    pub fn paginate<'a>(&self, tasks: impl IntoIterator<Item = &'a TaskView>) -> Value {
        let mut matching: Vec<&TaskView> = tasks.into_iter().filter(|t| self.matches(t)).collect();
        if self.reverse {
            matching.sort_by_key(|t| t.uid);
        } else {
            matching.sort_by_key(|t| std::cmp::Reverse(t.uid));
        }
        let total = matching.len();
        let page: Vec<&TaskView> = matching
            .into_iter()
            .filter(|t| {
                self.from
                    .is_none_or(|f| if self.reverse { t.uid >= f } else { t.uid <= f })
            })
            .take(self.limit as usize + 1)
            .collect();
        let (shown, next) = if page.len() > self.limit as usize {
            (
                &page[..self.limit as usize],
                Some(page[self.limit as usize].uid),
            )
        } else {
            (&page[..], None)
        };
        let mut m = Map::new();
        m.insert(
            "results".into(),
            Value::Array(shown.iter().map(|t| t.meili.clone()).collect()),
        );
        m.insert("total".into(), Value::from(total as u64));
        m.insert("limit".into(), Value::from(self.limit));
        m.insert(
            "from".into(),
            shown.first().map_or(Value::Null, |t| Value::from(t.uid)),
        );
        m.insert("next".into(), next.map_or(Value::Null, Value::from));
        Value::Object(m)
    }
}

/// Parses the `{uid}` of `GET /tasks/{uid}` as Meilisearch does (an unsigned 32-bit integer):
/// `400 invalid_task_uids` otherwise.
pub fn parse_task_uid(segment: &str) -> Result<u64, MeiliError> {
    segment.parse::<u32>().map(u64::from).map_err(|_| {
        MeiliError::invalid(
            400,
            "invalid_task_uids",
            format!("Task uid `{segment}` is invalid. It should only contain numeric characters."),
        )
    })
}

/// `404 task_not_found`: `Task `{uid}` not found.`
pub fn task_not_found(uid: u64) -> MeiliError {
    MeiliError::invalid(404, "task_not_found", format!("Task `{uid}` not found."))
}

/// The indexes a task is registered under: its `indexUid`, plus both sides of every swap.
fn task_indexes(t: &TaskView) -> Vec<String> {
    let mut out: Vec<String> = t.index_uid.iter().cloned().collect();
    if let Some(swaps) = t.meili.pointer("/details/swaps").and_then(Value::as_array) {
        for s in swaps {
            if let Some(ix) = s.get("indexes").and_then(Value::as_array) {
                out.extend(ix.iter().filter_map(Value::as_str).map(str::to_string));
            }
        }
    }
    out
}
