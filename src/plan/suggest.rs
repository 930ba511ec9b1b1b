//! "Did you mean …?": the candidate closest to a misspelt name, by edit distance, for error
//! messages about unknown columns, sources, fields and topics.

/// The number of single-character insertions, deletions, substitutions and swaps of neighbours
/// that turn `a` into `b` (case-insensitive; the optimal string alignment distance).
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    // d[i][j]: the distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate closest to `name`, if it is likely what was meant: at most a third of the
/// name's characters differ, or one is the other with a part left out at the end (`placed` for
/// `placed_at`, `line_no` for `line`).
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .filter_map(|c| {
            let d = distance(name, c);
            let other = c.to_lowercase();
            let truncated = lower.len().min(other.len()) >= 3
                && (other.starts_with(&lower) || lower.starts_with(&other));
            (d <= limit || truncated).then_some((d, c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` Did you mean `x`?` when a candidate is close to `name`, else nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(name, candidates)
        .map(|c| format!(" Did you mean `{c}`?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_and_not_strangers() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("nmae", "name"), 1);
        assert_eq!(closest("nmae", ["id", "name", "email"]), Some("name"));
        assert_eq!(
            closest("placed", ["id", "placed_at", "status"]),
            Some("placed_at")
        );
        assert_eq!(
            closest("line_no", ["order_id", "line", "sku"]),
            Some("line")
        );
        assert_eq!(closest("id", ["ident"]), None, "too short to be a prefix");
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(closest("totl", ["id", "total", "user_id"]), Some("total"));
        assert_eq!(
            closest("custmer_id", ["customer_id", "id"]),
            Some("customer_id")
        );
        assert_eq!(closest("Email", ["email"]), Some("email"));
        assert_eq!(closest("price", ["id", "name"]), None);
        assert_eq!(did_you_mean("nme", ["name"]), " Did you mean `name`?");
        assert_eq!(did_you_mean("zzz", ["name"]), "");
    }
}
