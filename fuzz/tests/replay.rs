//! Every committed input of `fuzz/corpus/<target>/` (seeds, and crashes found and fixed) runs
//! through the same function its fuzz target calls, on stable, in the ordinary `cargo test`.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn replay(target: &str) {
    let (_, run) = ringcast_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap();
    let inputs = corpus(target);
    assert!(!inputs.is_empty(), "no corpus for {target}");
    for (path, bytes) in inputs {
        eprintln!("{target}: {}", path.display());
        run(&bytes);
    }
}

#[test]
fn datagram_corpus() {
    replay("datagram");
}

#[test]
fn offer_corpus() {
    replay("offer");
}

#[test]
fn sdpfrag_corpus() {
    replay("sdpfrag");
}

#[test]
fn config_corpus() {
    replay("config");
}
