//! Golden vectors for the routing wire contract. They were computed once and frozen: if any of these
//! assertions fails, documents already stored would be looked for on the wrong shard or node. Do not
//! "fix" the expected values; fix the code.

use miroir_core::routing::{canonical_id, rendezvous_score, shard_for_key, Placement};
use miroir_core::topology::{Node, NodeId, Topology};
use serde_json::json;
use xxhash_rust::xxh3::xxh3_64;

const SHARD_COUNTS: [u32; 6] = [1, 2, 7, 16, 64, 1000];

/// id → (xxh3_64 of its UTF-8 bytes, shard for S = 1, 2, 7, 16, 64, 1000).
const DOCUMENT_IDS: &[(&str, u64, [u32; 6])] = &[
    ("", 0x2D06800538D394C2, [0, 0, 4, 2, 2, 138]),
    ("0", 0x1982E3A7BB241055, [0, 1, 3, 5, 21, 133]),
    ("1", 0x65CD25028F98F158, [0, 0, 6, 8, 24, 464]),
    ("5", 0xDEDB980100C87E72, [0, 0, 4, 2, 50, 274]),
    ("42", 0x1217CB28C0EF2191, [0, 1, 5, 1, 17, 473]),
    ("-1", 0xBC25A7B612CBA21F, [0, 1, 0, 15, 31, 903]),
    (
        "18446744073709551615",
        0x9131AB7296C23377,
        [0, 1, 6, 7, 55, 863],
    ),
    ("abc", 0x78AF5F94892F3950, [0, 0, 2, 0, 16, 104]),
    ("doc-1", 0xC11D9F2DEEE2F041, [0, 1, 4, 1, 1, 425]),
    ("a_b-C", 0xD13559C3F5A84709, [0, 1, 5, 9, 9, 329]),
    ("meili", 0x7F5D2D4E05076132, [0, 0, 4, 2, 50, 602]),
    ("héllo", 0x6A45B79A7B549B1F, [0, 1, 2, 15, 31, 375]),
    ("SKU_000123", 0xF7AFEFCDEFD80069, [0, 1, 3, 9, 41, 641]),
];

/// (node id, shard) → rendezvous score over `node id bytes ‖ 0x00 ‖ shard u32 LE`.
const RENDEZVOUS: &[(&str, u32, u64)] = &[
    ("meili-0", 0, 0x762C9C807F01EC5C),
    ("meili-0", 1, 0xD0DBDE37E21CC520),
    ("meili-1", 0, 0xF5A2A3E89D61B466),
    ("meili-1", 1, 0xE8B7BD38511BF0CB),
    ("a", 7, 0xE85358E7D0C86928),
    ("node-ü", 65535, 0xAAEB4CA828C4E2D6),
];

#[test]
fn document_id_hashes_and_shards_are_frozen() {
    for (id, hash, shards) in DOCUMENT_IDS {
        assert_eq!(xxh3_64(id.as_bytes()), *hash, "hash of {id:?}");
        for (s, want) in SHARD_COUNTS.iter().zip(shards) {
            assert_eq!(shard_for_key(id, *s), *want, "{id:?} with S={s}");
        }
    }
}

#[test]
fn integer_ids_use_their_decimal_form() {
    let cases = [
        (json!(1), "1"),
        (json!(5), "5"),
        (json!(42), "42"),
        (json!(-1), "-1"),
        (json!(u64::MAX), "18446744073709551615"),
    ];
    for (value, text) in cases {
        let canonical = canonical_id(&value).unwrap();
        assert_eq!(canonical, text);
        for s in SHARD_COUNTS {
            assert_eq!(shard_for_key(&canonical, s), shard_for_key(text, s));
        }
    }
}

#[test]
fn rendezvous_scores_are_frozen() {
    for (node, shard, score) in RENDEZVOUS {
        assert_eq!(
            rendezvous_score(&NodeId::from(*node), *shard),
            *score,
            "{node} / {shard}"
        );
        // The documented byte layout, spelled out.
        let mut bytes = node.as_bytes().to_vec();
        bytes.push(0);
        bytes.extend_from_slice(&shard.to_le_bytes());
        assert_eq!(xxh3_64(&bytes), *score);
    }
}

/// Owners of every shard of a one-group topology with nodes `meili-0..n`, best first.
fn owners(shards: u32, rf: u32, n: u32) -> Vec<Vec<String>> {
    let nodes = (0..n)
        .map(|i| Node::active(format!("meili-{i}"), format!("http://meili-{i}:7700"), 0))
        .collect();
    let t = Topology {
        epoch: 1,
        shards,
        replication_factor: rf,
        replica_groups: 1,
        nodes,
    };
    let p = Placement::new(&t).unwrap();
    (0..shards)
        .map(|s| p.owners(s, 0).iter().map(|id| id.to_string()).collect())
        .collect()
}

#[test]
fn placements_are_frozen() {
    assert_eq!(
        owners(8, 2, 3),
        [
            ["meili-2", "meili-1"],
            ["meili-1", "meili-0"],
            ["meili-2", "meili-0"],
            ["meili-0", "meili-2"],
            ["meili-1", "meili-0"],
            ["meili-0", "meili-1"],
            ["meili-0", "meili-2"],
            ["meili-2", "meili-1"],
        ]
    );
    assert_eq!(
        owners(12, 1, 4),
        [
            ["meili-2"],
            ["meili-1"],
            ["meili-3"],
            ["meili-0"],
            ["meili-1"],
            ["meili-3"],
            ["meili-3"],
            ["meili-2"],
            ["meili-1"],
            ["meili-0"],
            ["meili-0"],
            ["meili-2"],
        ]
    );
}
