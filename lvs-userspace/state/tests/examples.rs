//! The configurations the repository shows are ones lvsd loads: the
//! README's `[[service]]` examples and the example installed by
//! `cargo xtask install`.

use lvs_state::config;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_readme_s_service_examples_load() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.starts_with("[[service]]"))
        .collect();
    assert!(blocks.len() >= 2, "{}", blocks.len());
    for block in blocks {
        config::parse(block, "README.md").unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
}

#[test]
fn the_installed_example_loads() {
    let path = root().join("docs/systemd/lvs.toml");
    let loaded = config::Source::Toml(path).load().unwrap();
    assert_eq!(loaded.commands.len(), 5, "{:?}", loaded.commands);
}
