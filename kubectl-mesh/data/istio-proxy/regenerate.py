#!/usr/bin/env python3
"""Regenerates releases.tsv and extensions.tsv from git clones of istio/proxy and istio/test-infra.

Usage:
    python3 regenerate.py PROXY_GIT_DIR TEST_INFRA_GIT_DIR [ISTIO_GIT_DIR]

Each *_GIT_DIR is a git directory (bare or not) of the public repository. Nothing is built or
downloaded: the script only runs `git show` / `git log` and evaluates istio/proxy's
bazel/extension_config/extensions_build_config.bzl (plain Starlark dicts and lists, which
Python evaluates the same way once its `load(...)` lines are dropped).

Rows: every istio/proxy tag 1.20.0 and newer (pre-releases included: their ISTIO_VERSION is
what a proxy reports and what `match.proxy.proxyVersion` sees), plus `master` (the snapshot's
HEAD). ISTIO_GIT_DIR, when given, names the master row's ISTIO_VERSION (VERSION file + commit,
the form of Istio's dev builds) and checks that every istio/istio tag's istio.deps points at
the istio/proxy tag of the same name.
"""

import re
import subprocess
import sys
from pathlib import Path

BUILD_CONFIG = "bazel/extension_config/extensions_build_config.bzl"
MIN_MINOR = 20
HERE = Path(__file__).resolve().parent


def git(gitdir, *args):
    return subprocess.run(
        ["git", "--git-dir", str(gitdir), *args], check=True, capture_output=True, text=True
    ).stdout


def version_key(v):
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(?:-(.+))?", v)
    if not m:
        return (9999, 0, 0, 1, ())
    pre = m.group(4)
    pre_key = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")) if pre else ()
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), 0 if pre else 1, pre_key)


def extensions_at(proxy, rev):
    """The EXTENSIONS dict istio/proxy hands Envoy's build at `rev` (disabled ones removed,
    enabled contrib ones added, exactly as the file computes it)."""
    src = git(proxy, "show", f"{rev}:{BUILD_CONFIG}")
    src = re.sub(r"^load\(.*?\)\s*$", "", src, flags=re.M | re.S)
    scope = {}
    exec(compile(src, f"{rev}:{BUILD_CONFIG}", "exec"), scope)  # noqa: S102 - Starlark data
    return set(scope["EXTENSIONS"])


def workspace_envoy(proxy, rev):
    ws = git(proxy, "show", f"{rev}:WORKSPACE")

    def var(name):
        m = re.search(rf'^{name} = "([^"]*)"', ws, flags=re.M)
        return m.group(1) if m else ""

    date = re.search(r"^# Commit date: (\S+)", ws, flags=re.M)
    return var("ENVOY_ORG"), var("ENVOY_REPO"), var("ENVOY_SHA"), date.group(1) if date else ""


def envoy_branches(test_infra):
    """Per Istio minor: (Envoy release branch, date the proxy automator first tracked it), from
    the UPDATE_BRANCH of istio/test-infra's proxy-1.N job config (last value in history)."""
    out = {}
    log = git(test_infra, "log", "--format=@%H %cI", "--name-only", "HEAD", "--", "prow")
    commits = []
    for line in log.splitlines():
        if line.startswith("@"):
            sha, date = line[1:].split(" ", 1)
            commits.append((sha, date, []))
        elif line.strip() and commits:
            commits[-1][2].append(line.strip())
    seen = {}  # minor -> list of (date, branch), oldest first
    for sha, date, paths in reversed(commits):
        for p in paths:
            m = re.search(r"(?:^|/)config/jobs/proxy-1\.(\d+)\.yaml$", p)
            if not m:
                continue
            try:
                text = git(test_infra, "show", f"{sha}:{p}")
            except subprocess.CalledProcessError:
                continue  # deleted in this commit
            b = re.search(r"UPDATE_BRANCH=(release/v1\.\d+)", text)
            if b:
                seen.setdefault(int(m.group(1)), []).append((date, b.group(1)))
    for minor, hist in seen.items():
        final = hist[-1][1]
        first = next(d for d, b in hist if b == final)
        out[minor] = (final, first)
    return out


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    proxy, test_infra = Path(sys.argv[1]), Path(sys.argv[2])
    istio = Path(sys.argv[3]) if len(sys.argv) == 4 else None

    tags = [
        t
        for t in git(proxy, "tag").split()
        if (m := re.fullmatch(r"1\.(\d+)\.\d+(?:-.+)?", t)) and int(m.group(1)) >= MIN_MINOR
    ]
    tags.sort(key=version_key)
    branches = envoy_branches(test_infra)

    master_version = "master"
    if istio is not None:
        for t in tags:
            deps = git(istio, "show", f"{t}:istio.deps")
            m = re.search(r'"PROXY_REPO_SHA".*?"lastStableSHA": "([0-9a-f]+)"', deps, flags=re.S)
            tag_commit = git(proxy, "rev-parse", f"{t}^{{commit}}").strip()
            if not m or m.group(1) != tag_commit:
                sys.exit(f"istio/istio {t} istio.deps does not point at istio/proxy tag {t}")
        ver = git(istio, "show", "HEAD:VERSION").strip()
        master_version = f"{ver}-alpha.{git(istio, 'rev-parse', 'HEAD').strip()}"

    rows = []
    sets = {}  # frozenset -> name (first release that has it)
    for rev, name, version in [(t, t, t) for t in tags] + [("HEAD", "master", master_version)]:
        ext = frozenset(extensions_at(proxy, rev))
        set_name = sets.setdefault(ext, name)
        org, repo, sha, date = workspace_envoy(proxy, rev)
        commit = git(proxy, "rev-parse", f"{rev}^{{commit}}").strip()
        minor = int(name.split(".")[1]) if name != "master" else None
        line = "main"
        if minor is not None and minor in branches:
            branch, since = branches[minor]
            changed = git(proxy, "log", "-1", "--format=%cI", rev, "--", "WORKSPACE").strip()
            if changed >= since:
                line = branch
        rows.append((name, version, commit, set_name, f"{org}/{repo}", sha, date, line))

    header = [
        "# Istio releases and their istio-proxy build: generated by regenerate.py (see README.md).",
        f"# Source: istio/proxy (github.com/istio/proxy) tag {MIN_MINOR}+ and HEAD: {BUILD_CONFIG}",
        "#   (extension_set names the extensions.tsv column) and WORKSPACE (ENVOY_ORG/REPO/SHA,",
        "#   '# Commit date'). envoy_line: istio/test-infra prow/*config/jobs/proxy-1.N.yaml",
        "#   UPDATE_BRANCH, taken when istio/proxy's WORKSPACE last changed on or after the day",
        "#   the automator first tracked that branch; else 'main'.",
        f"# istio/proxy HEAD at generation: {git(proxy, 'rev-parse', 'HEAD').strip()}",
    ]
    cols = "release\tistio_version\tproxy_commit\textension_set\tenvoy_repo\tenvoy_sha\tenvoy_commit_date\tenvoy_line"
    (HERE / "releases.tsv").write_text(
        "\n".join(header + [cols] + ["\t".join(r) for r in rows]) + "\n"
    )

    names = sorted(set().union(*sets))
    set_cols = list(sets.items())
    set_cols.sort(key=lambda kv: version_key(kv[1]) if kv[1] != "master" else (9999,))
    header = [
        "# Extensions compiled into istio-proxy: generated by regenerate.py (see README.md).",
        f"# Source: istio/proxy {BUILD_CONFIG}, EXTENSIONS as the file computes it",
        "#   (ENVOY_EXTENSIONS minus ISTIO_DISABLED_EXTENSIONS plus ISTIO_ENABLED_CONTRIB_EXTENSIONS).",
        "# One column per distinct set, named by the first release that has it; releases.tsv says",
        "#   which set each release has. '+' = compiled in, '.' = not. Names are the build-config",
        "#   keys. Envoy core factories (not listed here) are in type-urls.tsv.",
    ]
    lines = ["extension\t" + "\t".join(n for _, n in set_cols)]
    for e in names:
        lines.append(e + "\t" + "\t".join("+" if e in s else "." for s, _ in set_cols))
    (HERE / "extensions.tsv").write_text("\n".join(header + lines) + "\n")


if __name__ == "__main__":
    main()
