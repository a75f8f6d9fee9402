// sigstore-tuf DIR TRUSTED_ROOT_JSON: TEST ONLY (make admission-test). Kyverno's
// SigstoreBundle verifier reads its trusted root only as the TUF target
// trusted_root.json, through sigstore/sigstore's TUF client and its cache in
// $TUF_ROOT. This makes, in DIR, a TUF repository (DIR/repo: keys made per
// run, one target, TRUSTED_ROOT_JSON) and initializes that client's cache
// from it (DIR/cache, mirror file://DIR/repo/repository) with the same call
// Kyverno's own --tufRoot/--tufMirror flags make, so that a Kyverno run with
// TUF_ROOT=DIR/cache trusts TRUSTED_ROOT_JSON and asks no network.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	sigstoretuf "github.com/sigstore/sigstore/pkg/tuf"
	"github.com/theupdateframework/go-tuf"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: sigstore-tuf DIR TRUSTED_ROOT_JSON")
		os.Exit(2)
	}
	dir, err := filepath.Abs(os.Args[1])
	check(err)
	repoDir := filepath.Join(dir, "repo")
	target, err := os.ReadFile(os.Args[2])
	check(err)
	check(os.MkdirAll(filepath.Join(repoDir, "staged", "targets"), 0o700))
	check(os.WriteFile(filepath.Join(repoDir, "staged", "targets", "trusted_root.json"), target, 0o600))
	repo, err := tuf.NewRepo(tuf.FileSystemStore(repoDir, nil))
	check(err)
	check(repo.Init(false))
	for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
		_, err := repo.GenKey(role)
		check(err)
	}
	check(repo.AddTarget("trusted_root.json", nil))
	check(repo.Snapshot())
	check(repo.Timestamp())
	check(repo.Commit())
	root, err := os.ReadFile(filepath.Join(repoDir, "repository", "root.json"))
	check(err)
	check(os.Setenv(sigstoretuf.TufRootEnv, filepath.Join(dir, "cache")))
	check(sigstoretuf.Initialize(context.Background(), "file://"+filepath.Join(repoDir, "repository"), root))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "sigstore-tuf:", err)
		os.Exit(1)
	}
}
