//! Settings convergence: once the fleet is quiet, every node holds the same settings for the index (compared
//! with core's `settings_sync::settings_hash`, Miroir's own entries ignored). A settings change that reached
//! only some nodes (one was down, the change was refused) must have been repaired.

use std::collections::BTreeMap;

/// `hashes`: each node's settings hash; a node without the index is absent.
pub fn check(hashes: &BTreeMap<String, String>) -> Result<(), String> {
    let mut by_hash: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (node, hash) in hashes {
        by_hash
            .entry(hash.as_str())
            .or_default()
            .push(node.as_str());
    }
    if by_hash.len() > 1 {
        let groups: Vec<String> = by_hash
            .iter()
            .map(|(h, nodes)| format!("{} hold {}", nodes.join("+"), &h[..h.len().min(8)]))
            .collect();
        return Err(format!(
            "the nodes' settings diverge after quiescence: {}",
            groups.join("; ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_when_a_node_holds_other_settings() {
        let mut h: BTreeMap<String, String> = [("a", "11"), ("b", "11"), ("c", "11")]
            .iter()
            .map(|(n, x)| (n.to_string(), x.to_string()))
            .collect();
        assert!(check(&h).is_ok());
        assert!(check(&BTreeMap::new()).is_ok());
        h.insert("c".into(), "22".into()); // planted: node c missed a change
        let e = check(&h).unwrap_err();
        assert!(e.contains("a+b hold 11") && e.contains("c hold 22"), "{e}");
    }
}
