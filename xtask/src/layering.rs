//! The layering rule, checked on the xtask's own sources: a command module never imports
//! another command module, and a shared layer never imports a command (see ARCHITECTURE.md).

use std::{collections::BTreeSet, path::Path};

/// The commands: each may use the shared layers, never another command.
const COMMANDS: &[&str] = &["scaling", "resilience", "bench"];
/// The entry points that run commands: `main` dispatches, `test` runs them one after another.
const RUNNERS: &[&str] = &["main", "test"];

/// The top-level modules named by `crate::…` paths in `source`, including each name inside a
/// `use crate::{a, b::{…}}` group.
pub fn crate_modules(source: &str) -> BTreeSet<String> {
    let compact: String = source.chars().filter(|c| !c.is_whitespace()).collect();
    let mut names = BTreeSet::new();
    let mut rest = compact.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item = String::new();
            let mut at_top = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        at_top = true;
                        names.insert(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && at_top {
                    if c.is_alphanumeric() || c == '_' {
                        item.push(c);
                    } else {
                        at_top = false;
                    }
                }
            }
            names.insert(item);
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names.retain(|n| !n.is_empty() && n != "self");
    names
}

/// The top-level module a source file belongs to, from its path under `src/`.
pub fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_string()
}

/// Every import of `file` (in top-level module `module`) that breaks the layering rule.
pub fn violations(module: &str, file: &str, source: &str) -> Vec<String> {
    if RUNNERS.contains(&module) {
        return Vec::new();
    }
    crate_modules(source)
        .into_iter()
        .filter(|imported| imported != module && COMMANDS.contains(&imported.as_str()))
        .map(|imported| {
            if COMMANDS.contains(&module) {
                format!("{file}: the command `{module}` imports the command `{imported}`")
            } else {
                format!("{file}: the shared layer `{module}` imports the command `{imported}`")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn no_command_imports_another_command_and_no_layer_imports_a_command() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        assert!(files.len() > 20, "found only {} source files", files.len());
        let mut found = Vec::new();
        for path in files {
            let relative = path.strip_prefix(&src).expect("under src");
            if relative == Path::new("layering.rs") {
                continue; // this file names commands in its own test cases
            }
            let text = std::fs::read_to_string(&path).expect("readable source");
            found.extend(violations(
                &module_of(relative),
                &relative.display().to_string(),
                &text,
            ));
        }
        assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
    }

    #[test]
    fn an_import_of_another_command_is_found_in_every_spelling() {
        let grouped = "use crate::{\n    flags,\n    scaling::{self, checks::Check},\n    ui,\n};";
        assert_eq!(
            violations("bench", "bench/mod.rs", grouped),
            ["bench/mod.rs: the command `bench` imports the command `scaling`"]
        );
        let path = "fn f() { crate::resilience::run(); }";
        assert_eq!(violations("scaling", "scaling/mod.rs", path).len(), 1);
        let layer = "use crate::{stack::Stack, bench};";
        assert_eq!(
            violations("timeline", "timeline/mod.rs", layer),
            ["timeline/mod.rs: the shared layer `timeline` imports the command `bench`"]
        );
    }

    #[test]
    fn own_module_shared_layers_and_runners_are_allowed() {
        let own = "use crate::{scaling::checks, stack::{Stack, parse::{self, Container}}, ui};";
        assert!(violations("scaling", "scaling/faults.rs", own).is_empty());
        assert_eq!(
            crate_modules(own),
            ["scaling", "stack", "ui"].map(String::from).into()
        );
        let runner = "use crate::{resilience, scaling, bench};";
        assert!(violations("test", "test.rs", runner).is_empty());
        assert_eq!(module_of(Path::new("scaling/faults.rs")), "scaling");
        assert_eq!(module_of(Path::new("test.rs")), "test");
    }
}
