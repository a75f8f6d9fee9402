"""The crates a build of wordcount really compiles, by cargo's own resolver.

`cargo metadata`, which cargo-cyclonedx, cargo-sbom and cargo-auditable
read, resolves features once for the whole workspace and keeps optional
dependencies a build never enables: for the musl target it lists 12 crates
no build of the service compiles (zlib-rs, clap's colour stack from
testkit's default features, ...).
`cargo tree -p wordcount --target T` resolves as `cargo build` does, and is
what cargo-about's notices match. The SBOMs are cut to it (normalise-sbom.py)
and the image's cargo-auditable list is read against it (compare-sbom.py).
"""
import subprocess


def crates(root, target, edges="normal", packages=("-p", "wordcount")):
    """{(name, version)} reachable over `edges` (cargo tree -e) for target."""
    out = subprocess.run(
        ["cargo", "tree", "--locked", "--quiet", *packages, "-e", edges, "--target", target,
         "--prefix", "none", "--format", "{p}", "--manifest-path", f"{root}/Cargo.toml"],
        check=True, capture_output=True, text=True).stdout
    found = set()
    for line in filter(str.strip, out.splitlines()):  # --workspace: a blank line between trees
        name, version = line.split()[:2]
        found.add((name, version.removeprefix("v")))
    return found
