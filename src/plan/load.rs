//! Product files to plans: reading a file, a folder of them, or the text of one, parsing and
//! lowering each, and merging them into one plan with every file's error.

use std::collections::HashSet;
use std::path::Path;

use super::lower::lower;
use super::merge::{merge, Sharing};
use super::spec::{self, SourceText};
use super::Plan;

/// Reads, parses and checks one product file.
pub fn load(path: &Path) -> anyhow::Result<Plan> {
    let text = SourceText::read(path)?;
    let file = spec::parse(&text)?;
    Ok(lower(&text, &file)?)
}

/// Parses and checks the text of a product file read earlier from `path`.
pub fn parse(path: &Path, text: &str) -> anyhow::Result<Plan> {
    let text = SourceText {
        path: path.to_owned(),
        text: text.to_owned(),
    };
    let file = spec::parse(&text)?;
    Ok(lower(&text, &file)?)
}

/// The `*.toml` files of the given folders (sorted by name) and the given files, in order; a
/// file named twice (`dataflows/ dataflows/a.toml`, `./a.toml a.toml`) counts once.
pub fn product_files(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<_> = std::fs::read_dir(path)
                .map_err(|e| anyhow::anyhow!("cannot read folder {}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut seen = HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    Ok(files)
}

/// Reads every `*.toml` product file of a folder (sorted by name), or the given files, into one
/// plan; fails with every file's error.
pub fn load_all(paths: &[std::path::PathBuf]) -> anyhow::Result<Plan> {
    let (plan, errors) = load_each(paths)?;
    match errors.len() {
        0 => Ok(plan),
        1 => Err(errors.into_iter().next().expect("one error")),
        n => anyhow::bail!(
            "{n} product files have errors:\n{}",
            errors
                .iter()
                .map(|e| format!("{e:#}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// Reads every product file of `paths` (see [`product_files`]): the plan of the files that load
/// and fit together, and the error of each file that does not.
pub fn load_each(paths: &[std::path::PathBuf]) -> anyhow::Result<(Plan, Vec<anyhow::Error>)> {
    let files = product_files(paths)?;
    anyhow::ensure!(
        !files.is_empty(),
        "no product files (*.toml) in {}",
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut plan = Plan {
        sources: Vec::new(),
        products: Vec::new(),
    };
    let mut errors = Vec::new();
    for file in files {
        if let Err(e) = load(&file).and_then(|other| merge(&mut plan, other, Sharing::Union)) {
            errors.push(e);
        }
    }
    Ok((plan, errors))
}
