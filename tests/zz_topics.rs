mod common;
#[test]
fn list() {
    let names = common::kafka().topic_names().unwrap();
    let filter = std::env::var("TOPIC_FILTER").unwrap_or_default();
    let hits: Vec<&String> = names.iter().filter(|n| n.contains(&filter)).collect();
    eprintln!("{} topics, {} matching {filter:?}: {:?}", names.len(), hits.len(), &hits[..hits.len().min(40)]);
}
