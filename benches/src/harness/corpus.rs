//! A realistic corpus and query mix generated from a seed.
//!
//! Documents have a skewed (Zipf-like, exponent 1) vocabulary for `title` and `text`, facet fields
//! (`genre`, a skewed choice among a dozen; `tags`, one to four skewed picks among thirty), and numbers
//! to sort and filter on (`year`, an integer in 1920..=2025; `rating`, a number in 0.0..=10.0 with one
//! decimal). The query mix draws its words from the same vocabulary and distribution, and covers single
//! words, two words, prefixes, filters, sorts, facets and pagination.
//!
//! Invariants: document `i` and query `k` are pure functions of `(seed, i)` and `(seed, k)`, so two runs
//! (or two targets in compare mode) with one seed see exactly the same data, whatever the order or the
//! concurrency in which they are generated.

use serde_json::{json, Map, Value};

/// The number of distinct words in the vocabulary.
pub const VOCABULARY: usize = 2000;

const SYLLABLES: [&str; 32] = [
    "ka", "lo", "mi", "ra", "ven", "tor", "sa", "li", "mor", "den", "shi", "gal", "bra", "nu",
    "pel", "zo", "tan", "vi", "qua", "rin", "el", "fo", "dra", "mu", "sel", "ix", "ca", "ther",
    "on", "ba", "sto", "ne",
];

/// The genres, most frequent first (picked with the same skew as words).
pub const GENRES: [&str; 12] = [
    "drama",
    "comedy",
    "action",
    "thriller",
    "romance",
    "horror",
    "scifi",
    "documentary",
    "animation",
    "western",
    "noir",
    "musical",
];

/// The tags, most frequent first.
pub const TAGS: [&str; 30] = [
    "classic",
    "award",
    "indie",
    "family",
    "cult",
    "remake",
    "sequel",
    "based-on-book",
    "true-story",
    "space",
    "war",
    "music",
    "sports",
    "crime",
    "heist",
    "spy",
    "zombie",
    "robot",
    "time-travel",
    "superhero",
    "teen",
    "road-trip",
    "courtroom",
    "disaster",
    "monster",
    "samurai",
    "pirate",
    "wizard",
    "cowboy",
    "detective",
];

/// The fields to make filterable with `--setup`.
pub const FILTERABLE: [&str; 4] = ["genre", "tags", "year", "rating"];
/// The fields to make sortable with `--setup`.
pub const SORTABLE: [&str; 2] = ["year", "rating"];

/// SplitMix64 finaliser: a well-mixed 64-bit hash of `x`.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small deterministic stream (SplitMix64) seeded from a hash.
#[derive(Debug, Clone)]
pub struct Stream(u64);

impl Stream {
    /// A stream for `(seed, domain, index)`: independent streams for documents, queries and operations.
    pub fn new(seed: u64, domain: u64, index: u64) -> Stream {
        Stream(mix(
            mix(seed ^ domain.wrapping_mul(0xA24B_AED4_963E_E407)) ^ index
        ))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A uniform draw in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A uniform draw in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf-like sampling over ranks `0..n` with exponent 1: rank `r` has weight `1 / (r + 1)`.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` ranks (at least one).
    pub fn new(n: usize) -> Zipf {
        let n = n.max(1);
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for r in 0..n {
            acc += 1.0 / (r as f64 + 1.0);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    /// Draws a rank.
    pub fn sample(&self, s: &mut Stream) -> usize {
        let u = s.unit();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// The kinds of query in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueryKind {
    /// One word.
    SingleWord,
    /// Two words.
    TwoWords,
    /// The first letters of a word (prefix search).
    Prefix,
    /// A word and a filter on facets and numbers.
    Filter,
    /// A word sorted by a number.
    Sort,
    /// A word with a facet distribution.
    Facets,
    /// A word, page 2 to 5.
    Pagination,
}

impl QueryKind {
    /// Every kind, in mix order.
    pub const ALL: [QueryKind; 7] = [
        QueryKind::SingleWord,
        QueryKind::TwoWords,
        QueryKind::Prefix,
        QueryKind::Filter,
        QueryKind::Sort,
        QueryKind::Facets,
        QueryKind::Pagination,
    ];

    /// The share of the mix, in percent (sums to 100).
    pub fn weight(self) -> u64 {
        match self {
            QueryKind::SingleWord => 30,
            QueryKind::TwoWords => 20,
            QueryKind::Prefix => 15,
            QueryKind::Filter => 12,
            QueryKind::Sort => 8,
            QueryKind::Facets => 8,
            QueryKind::Pagination => 7,
        }
    }

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            QueryKind::SingleWord => "single_word",
            QueryKind::TwoWords => "two_words",
            QueryKind::Prefix => "prefix",
            QueryKind::Filter => "filter",
            QueryKind::Sort => "sort",
            QueryKind::Facets => "facets",
            QueryKind::Pagination => "pagination",
        }
    }
}

/// One generated search: its kind and the body to `POST /indexes/{uid}/search`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The kind.
    pub kind: QueryKind,
    /// The request body.
    pub body: Value,
}

const DOC_DOMAIN: u64 = 1;
const QUERY_DOMAIN: u64 = 2;

/// The corpus and query generator for one seed.
#[derive(Debug, Clone)]
pub struct Corpus {
    seed: u64,
    words: Vec<String>,
    words_zipf: Zipf,
    genre_zipf: Zipf,
    tag_zipf: Zipf,
}

impl Corpus {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> Corpus {
        let mut s = Stream::new(seed, 0, 0);
        let mut words = Vec::with_capacity(VOCABULARY);
        let mut seen = std::collections::HashSet::new();
        while words.len() < VOCABULARY {
            let n = 2 + s.below(3);
            let w: String = (0..n)
                .map(|_| SYLLABLES[s.below(SYLLABLES.len() as u64) as usize])
                .collect();
            if seen.insert(w.clone()) {
                words.push(w);
            }
        }
        Corpus {
            seed,
            words,
            words_zipf: Zipf::new(VOCABULARY),
            genre_zipf: Zipf::new(GENRES.len()),
            tag_zipf: Zipf::new(TAGS.len()),
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The vocabulary, most frequent word first.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    fn word<'a>(&'a self, s: &mut Stream) -> &'a str {
        &self.words[self.words_zipf.sample(s)]
    }

    fn phrase(&self, s: &mut Stream, n: u64) -> String {
        let mut out = String::new();
        for i in 0..n {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(self.word(s));
        }
        out
    }

    /// Document `id` (any `u64`; the initial corpus is `0..docs`).
    pub fn document(&self, id: u64) -> Value {
        let mut s = Stream::new(self.seed, DOC_DOMAIN, id);
        let title_len = 2 + s.below(5);
        let title = self.phrase(&mut s, title_len);
        let text_len = 10 + s.below(31);
        let text = self.phrase(&mut s, text_len);
        let genre = GENRES[self.genre_zipf.sample(&mut s)];
        let n_tags = 1 + s.below(4);
        let mut tags: Vec<&str> = Vec::new();
        for _ in 0..n_tags {
            let t = TAGS[self.tag_zipf.sample(&mut s)];
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let year = 1920 + s.below(106);
        let rating = s.below(101) as f64 / 10.0;
        json!({
            "id": id,
            "title": title,
            "text": text,
            "genre": genre,
            "tags": tags,
            "year": year,
            "rating": rating,
        })
    }

    /// Documents `start..start + n` as one batch.
    pub fn batch(&self, start: u64, n: u64) -> Vec<Value> {
        (start..start.saturating_add(n))
            .map(|i| self.document(i))
            .collect()
    }

    /// Query `k` of the mix.
    pub fn query(&self, k: u64) -> Query {
        let mut s = Stream::new(self.seed, QUERY_DOMAIN, k);
        let mut pick = s.below(100);
        let mut kind = QueryKind::SingleWord;
        for candidate in QueryKind::ALL {
            if pick < candidate.weight() {
                kind = candidate;
                break;
            }
            pick -= candidate.weight();
        }
        let mut body = Map::new();
        match kind {
            QueryKind::SingleWord => {
                body.insert("q".into(), json!(self.word(&mut s)));
            }
            QueryKind::TwoWords => {
                body.insert("q".into(), json!(self.phrase(&mut s, 2)));
            }
            QueryKind::Prefix => {
                let w = self.word(&mut s);
                let n = 2 + s.below(2) as usize;
                let prefix: String = w.chars().take(n).collect();
                body.insert("q".into(), json!(prefix));
            }
            QueryKind::Filter => {
                body.insert("q".into(), json!(self.word(&mut s)));
                let genre = GENRES[self.genre_zipf.sample(&mut s)];
                let filter = match s.below(3) {
                    0 => format!("genre = \"{genre}\""),
                    1 => format!("year >= {}", 1920 + s.below(100)),
                    _ => format!(
                        "tags = \"{}\" AND rating >= {}",
                        TAGS[self.tag_zipf.sample(&mut s)],
                        s.below(10)
                    ),
                };
                body.insert("filter".into(), json!(filter));
            }
            QueryKind::Sort => {
                body.insert("q".into(), json!(self.word(&mut s)));
                let field = SORTABLE[s.below(SORTABLE.len() as u64) as usize];
                let dir = if s.below(2) == 0 { "asc" } else { "desc" };
                body.insert("sort".into(), json!([format!("{field}:{dir}")]));
            }
            QueryKind::Facets => {
                body.insert("q".into(), json!(self.word(&mut s)));
                body.insert("facets".into(), json!(["genre", "tags", "year"]));
            }
            QueryKind::Pagination => {
                body.insert("q".into(), json!(self.word(&mut s)));
                let limit = 20;
                body.insert("limit".into(), json!(limit));
                body.insert("offset".into(), json!(limit * (1 + s.below(4))));
            }
        }
        Query {
            kind,
            body: Value::Object(body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_corpus_and_queries() {
        let a = Corpus::new(42);
        let b = Corpus::new(42);
        assert_eq!(a.words(), b.words());
        assert_eq!(a.batch(0, 200), b.batch(0, 200));
        for k in 0..500 {
            assert_eq!(a.query(k), b.query(k));
        }
        // Order independence: generating backwards gives the same documents.
        let backwards: Vec<Value> = (0..200).rev().map(|i| b.document(i)).collect();
        let mut forwards = a.batch(0, 200);
        forwards.reverse();
        assert_eq!(forwards, backwards);
    }

    #[test]
    fn different_seeds_differ() {
        let a = Corpus::new(1);
        let b = Corpus::new(2);
        assert_ne!(a.batch(0, 20), b.batch(0, 20));
        assert_ne!(
            (0..50).map(|k| a.query(k)).collect::<Vec<_>>(),
            (0..50).map(|k| b.query(k)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn vocabulary_is_distinct_and_skewed() {
        let c = Corpus::new(7);
        let set: std::collections::HashSet<&String> = c.words().iter().collect();
        assert_eq!(set.len(), VOCABULARY);
        let mut counts = vec![0u64; VOCABULARY];
        let mut s = Stream::new(7, 99, 0);
        for _ in 0..100_000 {
            counts[c.words_zipf.sample(&mut s)] += 1;
        }
        // Zipf with exponent 1: the top word is far more frequent than the 100th, which beats the 1000th.
        assert!(
            counts[0] > 5 * counts[99],
            "{} vs {}",
            counts[0],
            counts[99]
        );
        assert!(counts[0..10].iter().sum::<u64>() > counts[1000..1010].iter().sum::<u64>() * 20);
    }

    #[test]
    fn documents_have_the_fields_in_range() {
        let c = Corpus::new(3);
        for d in c.batch(0, 300) {
            let year = d["year"].as_u64().unwrap();
            assert!((1920..=2025).contains(&year));
            let rating = d["rating"].as_f64().unwrap();
            assert!((0.0..=10.0).contains(&rating));
            assert!(GENRES.contains(&d["genre"].as_str().unwrap()));
            let tags = d["tags"].as_array().unwrap();
            assert!((1..=4).contains(&tags.len()));
            let title_words = d["title"].as_str().unwrap().split(' ').count();
            assert!((2..=6).contains(&title_words));
        }
    }

    #[test]
    fn the_mix_covers_every_kind_near_its_weight() {
        let c = Corpus::new(11);
        let mut counts = std::collections::BTreeMap::new();
        for k in 0..10_000 {
            let q = c.query(k);
            *counts.entry(q.kind).or_insert(0u64) += 1;
            match q.kind {
                QueryKind::Filter => assert!(q.body["filter"].is_string()),
                QueryKind::Sort => assert!(q.body["sort"].is_array()),
                QueryKind::Facets => assert!(q.body["facets"].is_array()),
                QueryKind::Pagination => assert!(q.body["offset"].as_u64().unwrap() >= 20),
                QueryKind::TwoWords => {
                    assert_eq!(q.body["q"].as_str().unwrap().split(' ').count(), 2)
                }
                _ => assert!(q.body["q"].is_string()),
            }
        }
        assert_eq!(QueryKind::ALL.iter().map(|k| k.weight()).sum::<u64>(), 100);
        for kind in QueryKind::ALL {
            let n = counts.get(&kind).copied().unwrap_or(0);
            let expected = kind.weight() * 100;
            assert!(
                n > expected * 7 / 10 && n < expected * 13 / 10,
                "{kind:?}: {n} vs {expected}"
            );
        }
    }

    #[test]
    fn zipf_single_rank_and_stream_edges() {
        let z = Zipf::new(0);
        let mut s = Stream::new(0, 0, 0);
        for _ in 0..10 {
            assert_eq!(z.sample(&mut s), 0);
        }
        assert_eq!(s.below(0), 0);
        for _ in 0..1000 {
            let u = s.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
