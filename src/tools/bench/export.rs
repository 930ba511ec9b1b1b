//! The generated data for other systems (the PostgreSQL requery baseline): the snapshot as one
//! CSV file per source (header row; `COPY … WITH (FORMAT csv, HEADER)` loads it, empty unquoted
//! cells are NULL), the change records as `changes.jsonl` (one per Kafka record, in produce
//! order: `{"source", "op": "upsert"|"delete", "key": {…}, "row": {…}}`, values as the engine
//! renders them, timestamps as RFC 3339 strings), and `schema.json` (columns, types, keys).
//! Records are decoded by the engine's decoder, so both systems see the same rows.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::decode::{Change, Table};
use crate::plan::{ColumnType, Plan, SourcePlan};
use crate::tools::gen::GenOptions;
use crate::value::temporal::{format_date, format_time, format_timestamp};
use crate::value::{write_scalar, Value};

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub dir: String,
    /// Rows per source table, by source name.
    pub tables: BTreeMap<String, usize>,
    /// Lines of `changes.jsonl`.
    pub changes: usize,
}

fn type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::String => "string",
        ColumnType::Int => "int",
        ColumnType::Float => "float",
        ColumnType::Bool => "bool",
        ColumnType::Decimal { .. } => "decimal",
        ColumnType::Date => "date",
        ColumnType::Time => "time",
        ColumnType::Timestamp { .. } => "timestamp",
        ColumnType::Json => "json",
    }
}

fn csv_cell(value: &Value, out: &mut String) {
    let quoted = |s: &str, out: &mut String| {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    };
    match value {
        Value::Null => {}
        Value::Str(s) | Value::Json(s) => quoted(s, out),
        Value::Date(d) => out.push_str(&format_date(*d)),
        Value::Time(t) => out.push_str(&format_time(*t)),
        Value::Timestamp(t) => out.push_str(&format_timestamp(*t)),
        other => {
            let mut text = String::new();
            write_scalar(other, &mut text);
            quoted(&text, out);
        }
    }
}

/// `{"column": value, …}` of `names` and `values`.
fn json_object<'a>(
    names: impl Iterator<Item = &'a str>,
    values: &[Value],
    out: &mut String,
) -> anyhow::Result<()> {
    out.push('{');
    for (i, (name, value)) in names.zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(name)?);
        out.push(':');
        write_scalar(value, out);
    }
    out.push('}');
    Ok(())
}

fn change_line(source: &SourcePlan, change: &Change) -> anyhow::Result<String> {
    let mut out = String::from("{\"source\":");
    out.push_str(&serde_json::to_string(&source.name)?);
    let key_names = || source.key.iter().map(|&k| source.columns[k].name.as_str());
    match change {
        Change::Upsert { key, row } => {
            out.push_str(",\"op\":\"upsert\",\"key\":");
            json_object(key_names(), &key.values(), &mut out)?;
            out.push_str(",\"row\":");
            json_object(
                source.columns.iter().map(|c| c.name.as_str()),
                &row.values(),
                &mut out,
            )?;
        }
        Change::Delete { key } => {
            out.push_str(",\"op\":\"delete\",\"key\":");
            json_object(key_names(), &key.values(), &mut out)?;
        }
        Change::Truncate => anyhow::bail!("the generator wrote a truncate to {}", source.topic),
    }
    out.push('}');
    Ok(out)
}

/// Writes `schema.json`, `<source>.csv` (the snapshot of `gen`) and `changes.jsonl` (its changes)
/// into `dir`.
pub fn run(plan: &Plan, gen: &GenOptions, dir: &Path) -> anyhow::Result<ExportReport> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let schema = serde_json::json!({
        "sources": plan.sources.iter().map(|s| serde_json::json!({
            "name": s.name,
            "topic": s.topic,
            "columns": s.columns.iter().map(|c| serde_json::json!({"name": c.name, "type": type_name(c.ty)})).collect::<Vec<_>>(),
            "primary_key": s.key.iter().map(|&k| s.columns[k].name.clone()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let path = dir.join("schema.json");
    std::fs::write(&path, serde_json::to_string_pretty(&schema)?)
        .with_context(|| format!("cannot write {}", path.display()))?;

    let mut tables: Vec<Table> = vec![Table::new(); plan.sources.len()];
    let snapshot = GenOptions {
        changes: 0,
        ..gen.clone()
    };
    crate::tools::gen::generate(plan, &snapshot, |r| {
        tables[r.source].apply(super::decode_record(plan, &r)?);
        Ok(())
    })?;
    let mut report = ExportReport {
        dir: dir.display().to_string(),
        tables: BTreeMap::new(),
        changes: 0,
    };
    for (source, table) in plan.sources.iter().zip(&tables) {
        let path = dir.join(format!("{}.csv", source.name));
        let mut file = BufWriter::new(
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?,
        );
        let mut line = source.column_names().join(",");
        line.push('\n');
        for (_, row) in table.rows() {
            for (i, value) in row.values().iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                csv_cell(value, &mut line);
            }
            line.push('\n');
            file.write_all(line.as_bytes())?;
            line.clear();
        }
        file.write_all(line.as_bytes())?;
        file.flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
        report.tables.insert(source.name.clone(), table.len());
    }

    let path = dir.join("changes.jsonl");
    let mut file = BufWriter::new(
        File::create(&path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    crate::tools::gen::generate_changes(plan, gen, |r| {
        let line = change_line(&plan.sources[r.source], &super::decode_record(plan, &r)?)?;
        writeln!(file, "{line}")?;
        report.changes += 1;
        Ok(())
    })?;
    file.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_quote_strings_and_leave_nulls_empty() {
        let mut out = String::new();
        for v in [
            Value::str("a\"b"),
            Value::Null,
            Value::Int(7),
            Value::Timestamp(0),
            Value::Bool(true),
        ] {
            csv_cell(&v, &mut out);
            out.push(',');
        }
        assert_eq!(out, "\"a\"\"b\",,\"7\",1970-01-01T00:00:00Z,\"true\",");
    }

    #[test]
    fn exports_tables_and_changes() {
        let plan = crate::plan::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dataflows/github_user_profile.toml"
        )))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let gen = GenOptions {
            scale: 50,
            changes: 100,
            seed: 2,
        };
        let report = run(&plan, &gen, dir.path()).unwrap();
        assert_eq!(report.tables["users"], 50);
        assert!(report.changes >= 100);
        let users = std::fs::read_to_string(dir.path().join("users.csv")).unwrap();
        assert_eq!(
            users.lines().next(),
            Some("id,email,username,registered_at")
        );
        assert_eq!(users.lines().count(), 51);
        let changes = std::fs::read_to_string(dir.path().join("changes.jsonl")).unwrap();
        for line in changes.lines() {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(
                json["source"].is_string() && json["key"].is_object(),
                "{line}"
            );
        }
    }
}
