//! "Did you mean …?": the candidate closest to a misspelt name, by edit distance, for error
//! messages about unknown columns, sources, fields and topics.

/// The number of single-character insertions, deletions and substitutions that turn `a` into `b`
/// (case-insensitive).
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The candidate closest to `name`, if it is close enough to be a likely typo (at most a third of
/// the name's characters differ, and at least one is the same).
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
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
