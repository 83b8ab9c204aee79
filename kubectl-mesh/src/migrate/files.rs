//! Where `migrate` reads and writes: `-f` files, folders walked recursively (Helm charts by
//! their `templates/`, `crds/` and subcharts), stdin, and the all-or-nothing `--in-place` write.

use super::MigrateError;
use std::io::Read;
use std::path::{Path, PathBuf};

/// File extensions read from folders (what `kubectl apply -R` reads).
pub const MANIFEST_EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// One input: its path (`-` for stdin) and text.
#[derive(Debug, Clone)]
pub struct Input {
    /// Where it came from.
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
}

/// What a `-f` argument turned into.
#[derive(Debug, Clone)]
pub struct Source {
    /// The argument as given.
    pub arg: PathBuf,
    /// For a folder: what the walk found, for the "nothing to migrate" explanation.
    pub folder: Option<Folder>,
    /// The files read from it (one for a file or stdin).
    pub inputs: Vec<Input>,
}

/// What walking a folder found besides the manifests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folder {
    /// Helm charts met (folders with a `Chart.yaml`), relative to the argument (`.` for itself).
    pub charts: Vec<PathBuf>,
    /// Charts without a `templates/` folder.
    pub charts_without_templates: Vec<PathBuf>,
    /// Files skipped because they are chart metadata (`Chart.yaml`, `values.yaml`, ...).
    pub chart_files_skipped: usize,
    /// Files skipped for their extension (`.tpl`, `.txt`, `.md`, ...).
    pub other_files_skipped: usize,
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> MigrateError + '_ {
    move |source| MigrateError::Read {
        file: path.display().to_string(),
        source,
    }
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e))
}

/// Entries of `dir`, sorted, hidden ones (`.git`, `.helmignore`) left out.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, MigrateError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err(dir))?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    v.sort();
    Ok(v)
}

/// Collects the manifest files below `dir` into `files`, recursively, and what it skipped into
/// `folder`. A Helm chart (a folder with `Chart.yaml`) contributes only what Helm installs:
/// `templates/` and `crds/` (recursively) and its subcharts in `charts/`; `Chart.yaml`,
/// `values.yaml` and friends are not manifests. Symlinked folders are not followed (no loops).
fn walk(
    root: &Path,
    dir: &Path,
    files: &mut Vec<PathBuf>,
    folder: &mut Folder,
) -> Result<(), MigrateError> {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let rel = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel.to_path_buf()
    };
    let chart = dir.join("Chart.yaml").is_file();
    if chart {
        folder.charts.push(rel.clone());
        if !dir.join("templates").is_dir() {
            folder.charts_without_templates.push(rel);
        }
    }
    for path in entries(dir)? {
        let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if path.is_dir() {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if is_link || (chart && !["templates", "crds", "charts"].contains(&name)) {
                continue;
            }
            walk(root, &path, files, folder)?;
        } else if chart {
            folder.chart_files_skipped += 1;
        } else if is_manifest(&path) {
            files.push(path);
        } else {
            folder.other_files_skipped += 1;
        }
    }
    Ok(())
}

/// Reads `-f` arguments: files, folders (every `.yaml`, `.yml` and `.json` file below them,
/// recursively, like `kubectl -R`; Helm charts by their templates) and `-` (stdin, also the
/// default when none is given).
pub fn read_sources(args: &[PathBuf]) -> Result<Vec<Source>, MigrateError> {
    let stdin = [PathBuf::from("-")];
    let args = if args.is_empty() { &stdin[..] } else { args };
    let mut sources = Vec::new();
    for arg in args {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(read_err(p));
        let source = if arg.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(read_err(arg))?;
            Source {
                arg: arg.clone(),
                folder: None,
                inputs: vec![Input {
                    path: arg.clone(),
                    text,
                }],
            }
        } else if arg.is_dir() {
            let (mut files, mut folder) = (Vec::new(), Folder::default());
            walk(arg, arg, &mut files, &mut folder)?;
            let inputs = files
                .into_iter()
                .map(|path| {
                    Ok(Input {
                        text: read(&path)?,
                        path,
                    })
                })
                .collect::<Result<_, MigrateError>>()?;
            Source {
                arg: arg.clone(),
                folder: Some(folder),
                inputs,
            }
        } else {
            Source {
                arg: arg.clone(),
                folder: None,
                inputs: vec![Input {
                    path: arg.clone(),
                    text: read(arg)?,
                }],
            }
        };
        sources.push(source);
    }
    Ok(sources)
}

/// Writes every file or none: each goes to a temporary file next to it first, and only when
/// all of those succeeded are they renamed over the originals.
pub fn write_all<'a>(
    files: impl IntoIterator<Item = (&'a Path, &'a str)>,
) -> Result<(), MigrateError> {
    let mut staged: Vec<(PathBuf, &Path)> = Vec::new();
    let cleanup = |staged: &[(PathBuf, &Path)]| {
        for (tmp, _) in staged {
            let _ = std::fs::remove_file(tmp);
        }
    };
    for (path, text) in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.kubectl-mesh-migrate"));
        if let Err(source) = std::fs::write(&tmp, text) {
            cleanup(&staged);
            let _ = std::fs::remove_file(&tmp);
            return Err(MigrateError::Write {
                file: path.display().to_string(),
                source,
            });
        }
        if let Ok(meta) = std::fs::metadata(path) {
            let _ = std::fs::set_permissions(&tmp, meta.permissions());
        }
        staged.push((tmp, path));
    }
    for (i, (tmp, path)) in staged.iter().enumerate() {
        if let Err(source) = std::fs::rename(tmp, path) {
            cleanup(&staged[i..]);
            return Err(MigrateError::Write {
                file: path.display().to_string(),
                source,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kubectl-mesh-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_default();
        dir
    }

    #[test]
    fn folders_are_walked_recursively_and_charts_by_their_templates() {
        let root = scratch("walk");
        for (f, text) in [
            ("a.yaml", "a: 1"),
            ("README.md", "x"),
            ("sub/deep/b.yml", "b: 1"),
            (".git/c.yaml", "c: 1"),
            ("chart/Chart.yaml", "name: c"),
            ("chart/values.yaml", "x: 1"),
            ("chart/templates/d.yaml", "d: 1"),
            ("chart/templates/_helpers.tpl", "{{ define }}"),
            ("chart/templates/nested/e.yaml", "e: 1"),
            ("chart/ci/values-test.yaml", "x: 2"),
            ("chart/charts/subchart/Chart.yaml", "name: s"),
            ("chart/charts/subchart/templates/f.json", "{}"),
            ("empty-chart/Chart.yaml", "name: e"),
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let sources = read_sources(std::slice::from_ref(&root)).unwrap();
        let found: Vec<String> = sources[0]
            .inputs
            .iter()
            .map(|i| i.path.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        assert_eq!(
            found,
            [
                "a.yaml",
                "chart/charts/subchart/templates/f.json",
                "chart/templates/d.yaml",
                "chart/templates/nested/e.yaml",
                "sub/deep/b.yml"
            ]
        );
        let folder = sources[0].folder.clone().unwrap();
        assert_eq!(folder.charts.len(), 3);
        assert_eq!(
            folder.charts_without_templates,
            [PathBuf::from("empty-chart")]
        );
        // README.md and templates/_helpers.tpl.
        assert_eq!(folder.other_files_skipped, 2);
        // Chart.yaml x3, values.yaml (ci/ is not walked).
        assert_eq!(folder.chart_files_skipped, 4);
        let _ = std::fs::remove_dir_all(&root);
    }
}
