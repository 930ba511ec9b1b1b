//! A copy of the GitHub user profile whose topics and name are unique to one test, and
//! Debezium records for it.

use std::path::{Path, PathBuf};

use denorm::plan::Plan;
use serde_json::{json, Value};

use super::topics::{product_file, Rec, Scratch};

/// A copy of the GitHub product whose topics and name are unique to one test (so its default
/// dead-letter topic `<name>.dlq` is too); its topics are deleted when it drops.
pub struct Product {
    dir: tempfile::TempDir,
    file: PathBuf,
    pub prefix: String,
    pub name: String,
    pub plan: Plan,
    scratch: Scratch,
}

impl Product {
    pub fn new(tag: &str) -> Product {
        let dir = tempfile::tempdir().unwrap();
        let scratch = Scratch::new(tag);
        let prefix = scratch.prefix.clone();
        let file = product_file(dir.path(), "github_user_profile.toml", &prefix);
        let name = format!("{prefix}_profile");
        let text = std::fs::read_to_string(&file).unwrap().replace(
            "name = \"github_user_profile\"",
            &format!("name = \"{name}\""),
        );
        std::fs::write(&file, text).unwrap();
        let plan = denorm::plan::load(&file).unwrap();
        Product {
            dir,
            file,
            prefix,
            name,
            plan,
            scratch,
        }
    }
    /// The product file.
    pub fn path(&self) -> &str {
        self.file.to_str().unwrap()
    }
    /// A folder of the test's own (logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn topic(&self, table: &str) -> String {
        format!("{}.public.{table}", self.prefix)
    }
    pub fn output(&self) -> String {
        self.plan.products[0].output_topic.clone()
    }
    pub fn dlq(&self) -> String {
        format!("{}.dlq", self.name)
    }
    /// A schema-less change envelope with op `c`.
    pub fn upsert(&self, table: &str, key: Value, row: Value) -> Rec {
        let value = json!({"before": null, "after": row, "source": {"table": table}, "op": "c", "ts_ms": 1});
        (
            self.topic(table),
            Some(key.to_string()),
            Some(value.to_string()),
        )
    }
    pub fn user(&self, id: i64, email: &str, username: &str) -> Rec {
        self.upsert(
            "users",
            json!({ "email": email }),
            json!({"id": id, "email": email, "username": username, "registered_at": 1_600_000_000_000i64}),
        )
    }
    pub fn raw(&self, table: &str, key: &str, value: &str) -> Rec {
        (self.topic(table), Some(key.into()), Some(value.into()))
    }
    /// Generated records (snapshot, then changes) and how many of them are the snapshot.
    pub fn generate(&self, scale: usize, changes: usize, seed: u64) -> (Vec<Rec>, usize) {
        let mut records = Vec::new();
        let summary = denorm::tools::gen::generate(
            &self.plan,
            &denorm::tools::gen::GenOptions {
                scale,
                changes,
                seed,
            },
            |r| {
                records.push((self.plan.sources[r.source].topic.clone(), r.key, r.value));
                Ok(())
            },
        )
        .unwrap();
        (records, summary.snapshot_rows.iter().sum())
    }
}
