//! Reading a Miroir task: fetch the node tasks behind it and aggregate them.
//!
//! States: `Fetching` (one `GET /tasks/{uid}` per node task not yet known to be finished) → `Ready` (every
//! request answered or failed). Node tasks already finished are never fetched again: a finished node task
//! cannot change, so the caller keeps them (see [`TaskRead::finished_views`]) and passes them back next time.
//!
//! Invariants:
//! - only answers of this read, plus finished views, reach the aggregator: a node that does not answer is left
//!   out, so a stale `processing` view can never keep a task processing;
//! - a node task whose node stays silent counts as pending until `enqueued_at + lost_after`, then as lost
//!   (decided by `tasks::aggregate`), so a dead node never leaves a task `processing` forever.

use super::{Method, NodeRequest, RequestId};
use crate::tasks::{aggregate, MiroirTask, NodeTaskView, TaskView};
use crate::topology::NodeId;
use crate::Millis;
use serde_json::Value;
use std::collections::BTreeMap;

/// The node task views of one Miroir task, keyed by (node, node task uid).
pub type NodeTaskViews = BTreeMap<(NodeId, u64), NodeTaskView>;

/// One read of a Miroir task. See the module documentation.
#[derive(Debug, Clone)]
pub struct TaskRead {
    record: MiroirTask,
    views: NodeTaskViews,
    requests: Vec<NodeRequest>,
    keys: Vec<(NodeId, u64)>,
    open: Vec<bool>,
}

impl TaskRead {
    /// Starts reading `record`, reusing `finished` views from earlier reads.
    pub fn new(record: MiroirTask, finished: NodeTaskViews) -> Self {
        let mut views = NodeTaskViews::new();
        let mut requests = Vec::new();
        let mut keys = Vec::new();
        for r in &record.node_tasks {
            let Some(uid) = r.task_uid else { continue };
            let key = (r.node.clone(), uid);
            if let Some(v) = finished
                .get(&key)
                .filter(|v| v.status.is_some_and(|s| s.is_finished()))
            {
                views.insert(key, v.clone());
                continue;
            }
            if keys.contains(&key) {
                continue;
            }
            let id = requests.len();
            requests.push(NodeRequest {
                id,
                node: r.node.clone(),
                method: Method::Get,
                path: format!("/tasks/{uid}"),
                body: None,
            });
            keys.push(key);
        }
        let open = vec![true; requests.len()];
        TaskRead {
            record,
            views,
            requests,
            keys,
            open,
        }
    }

    /// The node requests to send (empty when everything is already known, or nothing was acked).
    pub fn requests(&self) -> &[NodeRequest] {
        &self.requests
    }

    /// Feeds a node's answer to request `id`. Only a 200 with a task object counts.
    pub fn on_response(&mut self, id: RequestId, status: u16, body: &Value) {
        if !self.open.get(id).copied().unwrap_or(false) {
            return;
        }
        self.open[id] = false;
        if status == 200 && body.is_object() {
            self.views
                .insert(self.keys[id].clone(), NodeTaskView::from_json(body));
        }
    }

    /// Request `id` failed: the node task stays unknown for this read.
    pub fn on_failure(&mut self, id: RequestId) {
        if let Some(o) = self.open.get_mut(id) {
            *o = false;
        }
    }

    /// Whether every request was answered or failed.
    pub fn is_ready(&self) -> bool {
        self.open.iter().all(|o| !o)
    }

    /// The aggregated task at `now`; node tasks silent past `lost_after` count as lost.
    pub fn view(&self, now: Millis, lost_after: Millis) -> TaskView {
        aggregate(&self.record, &self.views, now, lost_after)
    }

    /// The finished node task views, to keep for the next read.
    pub fn finished_views(&self) -> NodeTaskViews {
        self.views
            .iter()
            .filter(|(_, v)| v.status.is_some_and(|s| s.is_finished()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn record(&self) -> &MiroirTask {
        &self.record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::WriteQuorum;
    use crate::tasks::{node_task_refs, TaskStatus, TaskType};
    use serde_json::json;

    fn record() -> MiroirTask {
        let mut owners = crate::quorum::ShardOwners::new();
        owners.insert(0, vec![vec![NodeId::from("a"), NodeId::from("b")]]);
        let mut t = MiroirTask::new(
            5,
            Some("movies".into()),
            TaskType::DocumentAdditionOrUpdate,
            1_000,
            None,
        );
        t.node_tasks = node_task_refs(&owners, |n| {
            if n.as_str() == "a" {
                Some(10)
            } else {
                Some(20)
            }
        });
        t.placement = owners;
        t.quorum = WriteQuorum::Majority;
        t
    }

    fn node_task(status: &str) -> Value {
        json!({"uid": 1, "status": status, "type": "documentAdditionOrUpdate", "details": {"receivedDocuments": 1, "indexedDocuments": 1},
               "error": null, "enqueuedAt": "2026-11-27T09:16:21.219831259Z", "startedAt": "2026-11-27T09:16:21.3Z",
               "finishedAt": if status == "succeeded" { json!("2026-11-27T09:16:21.4Z") } else { Value::Null }})
    }

    #[test]
    fn fetches_each_node_task_and_aggregates() {
        let mut read = TaskRead::new(record(), NodeTaskViews::new());
        let paths: Vec<&str> = read.requests().iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/tasks/10", "/tasks/20"]);
        read.on_response(0, 200, &node_task("succeeded"));
        assert!(!read.is_ready());
        read.on_response(1, 200, &node_task("processing"));
        assert!(read.is_ready());
        assert_eq!(
            read.view(2_000, 60_000).status,
            TaskStatus::Processing,
            "majority of 2 needs both"
        );
        assert_eq!(read.finished_views().len(), 1);

        // the next read reuses the finished view and only asks the other node
        let mut again = TaskRead::new(record(), read.finished_views());
        assert_eq!(again.requests().len(), 1);
        assert_eq!(again.requests()[0].path, "/tasks/20");
        again.on_response(0, 200, &node_task("succeeded"));
        assert_eq!(again.view(3_000, 60_000).status, TaskStatus::Succeeded);
    }

    #[test]
    fn silent_nodes_are_left_out_and_become_lost() {
        let mut read = TaskRead::new(record(), NodeTaskViews::new());
        read.on_response(0, 200, &node_task("succeeded"));
        read.on_failure(1);
        read.on_response(1, 200, &node_task("succeeded"));
        assert!(read.is_ready());
        assert_eq!(read.view(2_000, 60_000).status, TaskStatus::Processing);
        let late = read.view(61_000, 60_000);
        assert!(
            late.status.is_finished(),
            "a dead node never leaves the task processing: {:?}",
            late.status
        );
        let mut garbage = TaskRead::new(record(), NodeTaskViews::new());
        garbage.on_response(0, 500, &json!({"oops": true}));
        garbage.on_response(1, 200, &json!("nope"));
        assert!(garbage.is_ready());
        assert_eq!(garbage.view(2_000, 60_000).status, TaskStatus::Enqueued);
    }
}
