//! Tests of `cluster.rs` (kept apart so the module stays readable).

use super::*;

#[test]
fn finds_a_needle_in_a_nested_file_and_counts_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("a/b")).unwrap();
    fs::write(dir.path().join("a/b/log.redb"), b"xx-canary-xx").unwrap();
    fs::write(dir.path().join("clean"), b"nothing here").unwrap();
    let scan = scan_for_bytes(dir.path(), &[b"canary"]).unwrap();
    assert_eq!(scan.files, 2);
    assert_eq!(scan.hits, vec![dir.path().join("a/b/log.redb")]);
    let clean = scan_for_bytes(dir.path(), &[b"absent"]).unwrap();
    assert!(clean.hits.is_empty());
}

#[test]
fn extra_node_config_keeps_top_level_keys_at_the_top() {
    let (top, sections) = split_top_level("lock_memory = false\n[audit]\nsync = \"write\"");
    assert_eq!(top, "lock_memory = false\n");
    assert_eq!(sections, "[audit]\nsync = \"write\"");
    let (top, sections) = split_top_level("[audit]\nsync = \"write\"\n");
    assert_eq!(top, "");
    assert_eq!(sections, "[audit]\nsync = \"write\"\n");
    let (top, sections) = split_top_level("lock_memory = false");
    assert_eq!(top, "lock_memory = false\n");
    assert_eq!(sections, "");
}
