//! # Search planning and the exact merge of shard answers
//!
//! A client search is rewritten once into a *shard request* ([`plan_search`]), specialised per node with its
//! shard restriction ([`SearchPlan::node_request`]), sent to the nodes of a covering set, and their answers
//! are merged into the response one Meilisearch node holding the whole corpus would give ([`merge_search`]).
//!
//! States of one search (the caller drives them; this module is pure):
//! 1. `Planned`: [`plan_search`] validated what Miroir interprets (`offset`, `limit`, `page`, `hitsPerPage`)
//!    and built the shard request: window over-fetched from the top (`offset: 0, limit: offset+limit`, or
//!    `page: 1, hitsPerPage: page*hitsPerPage`, both capped by `maxTotalHits`), ranking details always asked,
//!    the fields the merge needs added to `attributesToRetrieve`.
//! 2. `Dispatched`: one [`SearchPlan::node_request`] per node of the covering set, each AND-ing the node's
//!    shard restriction into the client's filter.
//! 3. `Merged`: [`merge_search`] with every node's [`NodeAnswer`] → the client's response, or a
//!    [`MeiliError`](crate::MeiliError) (`miroir_bad_node_response`) when an answer cannot be interpreted.
//!
//! Invariants:
//! - Hits are ordered by the ranking rules in order, read from `_rankingScoreDetails` (never by
//!   `_rankingScore` alone, which loses the order of custom ranking rules and sorts); ties are broken by
//!   `_miroir_shard`, then by the node's position in the covering set, and each node's own order is always
//!   kept (the merge is a k-way merge of the nodes' lists), so each node's over-fetched window always contains
//!   every hit the merged window needs and consecutive pages never overlap nor skip.
//! - Nothing `_miroir_*` reaches the client: such fields are stripped from hits, `_formatted` and
//!   `_matchesPosition`; `_rankingScore`/`_rankingScoreDetails` are stripped unless the client asked.
//! - Totals are capped by `maxTotalHits` exactly as one node caps them.
//!
//! Known limits (documented, not hidden):
//! - Ties between hits with identical ranking details are ordered by shard, then by the node's own order
//!   (its internal document ids), not by one node's internal ids over the whole corpus.
//! - Under `distinct`, per-shard counts (`estimatedTotalHits`, `totalHits`, facet counts) overcount when one
//!   distinct value spans several shards.
//! - Facet values ordered `alpha` are exact when nodes return at least the client's `maxValuesPerFacet`
//!   values; ordered by `count` they are exact only when nodes return every value (the proxy over-fetches).
//! - `requestUid` and `performanceDetails` are taken from one node (the first in the covering set, resp. the
//!   slowest); the proxy may substitute its own request uid. Pinned documents (`pin` details) are not placed.
//! - `matchingStrategy: frequency` and ranking rules whose maximum rank depends on a shard's own content
//!   cannot be exactly equivalent across shards. In particular, with `searchableAttributes: ["*"]` the
//!   `attribute` rule follows each node's own field discovery order; an explicit `searchableAttributes`
//!   list makes it identical on every node.

mod facets;
pub mod federation;
mod filter;
mod get;
mod merge;
mod pk;
mod plan;
mod raw;
mod scan;

/// A small deterministic generator (xorshift) for the search modules' property tests.
#[cfg(test)]
pub(crate) struct TestRng(pub(crate) u64);

#[cfg(test)]
impl TestRng {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

pub use facets::merge_facet_search;
pub use filter::{and_filter, shard_filter, ShardRestriction};
pub use get::search_params_from_query;
pub(crate) use get::split_sort;
pub use merge::{compare_hits, merge_search, merge_search_text};
pub use pk::{pinned_ids, pinned_shards, MAX_CASE_VARIANTS};
pub use plan::plan_search;
pub use raw::RawAnswer;

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Meilisearch's default `pagination.maxTotalHits`.
pub const DEFAULT_MAX_TOTAL_HITS: usize = 1000;
/// Meilisearch's default `faceting.maxValuesPerFacet`.
pub const DEFAULT_MAX_VALUES_PER_FACET: usize = 100;
/// Meilisearch's default `limit` and `hitsPerPage`.
pub const DEFAULT_SEARCH_LIMIT: usize = 20;

/// How the values of one facet are ordered (`faceting.sortFacetValuesBy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FacetOrder {
    /// `alpha`: numbers first in ascending order, then strings in ascending (normalised) order.
    #[default]
    Alpha,
    /// `count`: by count, highest first.
    Count,
}

/// What the index's settings imply for planning and merging a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchContext {
    /// `pagination.maxTotalHits` as the client sees it.
    pub max_total_hits: usize,
    /// `faceting.maxValuesPerFacet` as the client sees it (nodes are configured higher to over-fetch).
    pub max_values_per_facet: usize,
    /// `faceting.sortFacetValuesBy`: per facet name, with `*` as the default.
    pub sort_facet_values_by: BTreeMap<String, FacetOrder>,
    /// The `distinctAttribute` setting.
    pub distinct_attribute: Option<String>,
}

impl Default for SearchContext {
    fn default() -> Self {
        SearchContext {
            max_total_hits: DEFAULT_MAX_TOTAL_HITS,
            max_values_per_facet: DEFAULT_MAX_VALUES_PER_FACET,
            sort_facet_values_by: BTreeMap::new(),
            distinct_attribute: None,
        }
    }
}

impl SearchContext {
    /// The order of one facet's values: its own entry, else `*`, else alpha.
    pub fn facet_order(&self, facet: &str) -> FacetOrder {
        self.sort_facet_values_by
            .get(facet)
            .or_else(|| self.sort_facet_values_by.get("*"))
            .copied()
            .unwrap_or_default()
    }
}

/// The pagination style the client asked for, with the client's own values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pagination {
    /// `offset`/`limit`, answered with `estimatedTotalHits`.
    OffsetLimit {
        /// The client's `offset` (default 0), before capping.
        offset: usize,
        /// The client's `limit` (default 20), echoed as is.
        limit: usize,
    },
    /// `page`/`hitsPerPage`, answered with exhaustive `totalHits` and `totalPages`.
    Pages {
        /// The client's `page` (default 1; 0 gives no hits).
        page: usize,
        /// The client's `hitsPerPage` (default 20).
        hits_per_page: usize,
    },
}

/// Everything needed to dispatch a search to nodes and merge their answers.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPlan {
    /// The request every node receives, before its shard restriction.
    pub shard_request: Map<String, Value>,
    /// The client's pagination.
    pub pagination: Pagination,
    /// First hit of the merged window (after `maxTotalHits` capping).
    pub window_offset: usize,
    /// Number of hits in the merged window (after `maxTotalHits` capping).
    pub window_limit: usize,
    /// Whether the client asked for `_rankingScore`.
    pub show_ranking_score: bool,
    /// Whether the client asked for `_rankingScoreDetails`.
    pub show_ranking_score_details: bool,
    /// The distinct attribute in force (request `distinct`, else the setting).
    pub distinct: Option<String>,
    /// Attributes Miroir added to `attributesToRetrieve` and strips from the answer.
    pub added_attributes: Vec<String>,
    /// The client's query string (`q`), echoed when nodes do not echo one.
    pub query: String,
    /// The settings the plan was built with.
    pub context: SearchContext,
}

/// One node's answer to its search request.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAnswer {
    /// The node's position in the covering set (a tie-break of last resort, and its name in errors).
    pub order: usize,
    /// The parsed JSON body the node answered with (status 200).
    pub body: Value,
}
