//! The documentation's links: every relative link in README.md, CHANGELOG.md
//! and docs/ resolves to a file or folder of the repository, and none leaves it.

use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository")
}

fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md"), root.join("CHANGELOG.md")];
    let mut folders = vec![root.join("docs")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("docs/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files
}

/// The targets of `[text](target)` links, outside code blocks and spans.
fn links(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // code spans hold no links
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect();
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    targets
}

#[test]
fn every_relative_link_in_the_docs_resolves_inside_the_repository() {
    let root = repository();
    let files = markdown_files(&root);
    assert!(files.len() > 5, "{files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        for target in links(&text) {
            let shown = format!(
                "{}: {target}",
                file.strip_prefix(&root).unwrap_or(file).display()
            );
            if target.contains("://") || target.starts_with("mailto:") {
                broken.push(format!("{shown} (leaves the repository)"));
                continue;
            }
            let path = target.split('#').next().unwrap_or_default();
            if path.is_empty() {
                continue; // an anchor in the same page
            }
            checked += 1;
            let resolved = file.parent().expect("folder").join(path);
            match resolved.canonicalize() {
                Ok(found) if found.starts_with(&root) => {}
                Ok(_) => broken.push(format!("{shown} (outside the repository)")),
                Err(_) => broken.push(format!("{shown} (no such file)")),
            }
        }
    }
    assert!(checked > 20, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_finder_sees_links_and_skips_code() {
    let text = "see [a](docs/a.md) and `[not](code)`\n```\n[no](fence)\n```\n[b](../b.md#x)";
    assert_eq!(links(text), ["docs/a.md", "../b.md#x"]);
}
