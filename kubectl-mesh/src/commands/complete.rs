//! Completion as `kubectl mesh`: kubectl (1.26+) completes a plugin's arguments by running
//! `kubectl_complete-mesh ARGS... PARTIAL` from `PATH` and reading Cobra's protocol: one
//! candidate per line (`value<TAB>description`), then `:DIRECTIVE`. The plugin answers it when
//! run under that name (a link to it) or as `kubectl-mesh __complete ARGS... PARTIAL`. The
//! candidates come from the clap definition: subcommands, flags, and flag values.

use crate::cli::Cli;
use clap::{Arg, ArgAction, Command, CommandFactory};
use std::io::Write;

/// The name kubectl runs for `kubectl mesh` completions.
pub const COMPLETER: &str = "kubectl_complete-mesh";

/// Cobra's `ShellCompDirectiveNoFileComp`: offer no file names.
const NO_FILES: u32 = 4;
/// Cobra's `ShellCompDirectiveDefault`: the shell's own completion (file names).
const FILES: u32 = 0;

/// The completions of `args` (the last one is the word being completed, possibly empty) and
/// the directive, as Cobra prints them.
pub fn complete(args: &[String]) -> (Vec<String>, u32) {
    let root = Cli::command();
    let (partial, before) = match args.split_last() {
        Some((p, b)) => (p.as_str(), b),
        None => ("", &[][..]),
    };
    let mut cmd = &root;
    let mut globals: Vec<&Arg> = root.get_arguments().filter(|a| a.is_global_set()).collect();
    let mut expects_value: Option<&Arg> = None;
    for word in before {
        if expects_value.take().is_some() {
            continue;
        }
        if let Some(arg) = find_flag(cmd, &globals, word) {
            if takes_value(arg) && !word.contains('=') {
                expects_value = Some(arg);
            }
            continue;
        }
        if let Some(sub) = cmd
            .get_subcommands()
            .find(|s| s.get_name() == word || s.get_all_aliases().any(|a| a == word))
        {
            cmd = sub;
            globals.extend(sub.get_arguments().filter(|a| a.is_global_set()));
        }
    }
    if let Some(arg) = expects_value {
        return values(arg, partial, "");
    }
    if let Some((flag, value)) = partial.split_once('=') {
        if let Some(arg) = find_flag(cmd, &globals, flag) {
            return values(arg, value, &format!("{flag}="));
        }
    }
    if partial.starts_with('-') {
        let mut out: Vec<String> = cmd
            .get_arguments()
            .chain(globals.iter().copied())
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long().map(|l| (format!("--{l}"), a)))
            .filter(|(l, _)| l.starts_with(partial))
            .map(|(l, a)| with_help(l, a.get_help().map(ToString::to_string)))
            .collect();
        out.sort();
        out.dedup();
        return (out, NO_FILES);
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name().starts_with(partial))
        .map(|s| {
            with_help(
                s.get_name().to_owned(),
                s.get_about().map(ToString::to_string),
            )
        })
        .collect();
    if cmd.has_subcommands() {
        return (subs, NO_FILES);
    }
    // A positional argument (completion's shell, module push's reference): its values if
    // known, else nothing to offer but what the shell completes.
    let positional = cmd.get_positionals().next();
    match positional {
        Some(arg) if !arg.get_possible_values().is_empty() => values(arg, partial, ""),
        _ => (Vec::new(), NO_FILES),
    }
}

fn with_help(value: String, help: Option<String>) -> String {
    match help {
        Some(h) => {
            let first = h.lines().next().unwrap_or_default().trim_end_matches('.');
            format!("{value}\t{first}")
        }
        None => value,
    }
}

/// The flag `word` names (`--name`, `-n`, `--name=value`), in `cmd` or among the globals.
fn find_flag<'a>(cmd: &'a Command, globals: &[&'a Arg], word: &str) -> Option<&'a Arg> {
    let flag = word.split_once('=').map_or(word, |(f, _)| f);
    let matches = |a: &&Arg| {
        if let Some(long) = flag.strip_prefix("--") {
            a.get_long() == Some(long)
        } else if let Some(short) = flag.strip_prefix('-') {
            short.len() == 1 && a.get_short().map(String::from).as_deref() == Some(short)
        } else {
            false
        }
    };
    cmd.get_arguments()
        .find(matches)
        .or_else(|| globals.iter().copied().find(matches))
}

fn takes_value(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Set | ArgAction::Append)
        && arg.get_num_args().is_none_or(|n| n.min_values() > 0)
}

/// The values of `arg` starting with `partial` (each prefixed by `prefix`), or the shell's file
/// names for a file argument.
fn values(arg: &Arg, partial: &str, prefix: &str) -> (Vec<String>, u32) {
    let possible = arg.get_possible_values();
    if !possible.is_empty() {
        let out = possible
            .iter()
            .filter(|v| !v.is_hide_set() && v.get_name().starts_with(partial))
            .map(|v| {
                with_help(
                    format!("{prefix}{}", v.get_name()),
                    v.get_help().map(ToString::to_string),
                )
            })
            .collect();
        return (out, NO_FILES);
    }
    let names = arg
        .get_value_names()
        .map(|v| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let file = ["FILE", "PATH", "FILE|DIR", "MESH_YAML"]
        .iter()
        .any(|f| names == *f);
    (Vec::new(), if file { FILES } else { NO_FILES })
}

/// Prints `args`' completions in Cobra's protocol.
pub fn print(args: &[String], out: &mut impl Write) {
    let (candidates, directive) = complete(args);
    for c in candidates {
        let _ = writeln!(out, "{c}");
    }
    let _ = writeln!(out, ":{directive}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(args: &[&str]) -> (Vec<String>, u32) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (c, d) = complete(&args);
        (
            c.into_iter()
                .map(|c| c.split('\t').next().unwrap_or_default().to_owned())
                .collect(),
            d,
        )
    }

    #[test]
    fn subcommands_flags_and_values() {
        let (c, d) = words(&["en"]);
        assert_eq!((c, d), (vec!["enable".to_owned()], NO_FILES));
        let (c, _) = words(&[""]);
        assert!(c.contains(&"check".to_owned()) && !c.contains(&"__complete".to_owned()));
        let (c, _) = words(&["enable", "--envoy-c"]);
        assert_eq!(c, ["--envoy-context"]);
        let (c, _) = words(&["enable", "--envoy-context", "side"]);
        assert_eq!(c, ["sidecar-outbound", "sidecar-inbound"]);
        let (c, _) = words(&["enable", "--dry-run=s"]);
        assert_eq!(c, ["--dry-run=server"]);
        let (c, _) = words(&["-n", "x", "check", "-o", ""]);
        assert_eq!(c, ["yaml", "json"]);
        // A file: the shell's own completion.
        assert_eq!(words(&["enable", "-f", ""]), (vec![], FILES));
        // A free value: nothing to offer, and no file names either.
        assert_eq!(words(&["enable", "--name", ""]), (vec![], NO_FILES));
        let (c, _) = words(&["completion", "z"]);
        assert_eq!(c, ["zsh"]);
    }

    #[test]
    fn cobra_protocol() {
        let mut out = Vec::new();
        print(&["dis".to_owned()], &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("disable\t"), "{text}");
        assert!(text.ends_with("\n:4\n"), "{text}");
    }
}
