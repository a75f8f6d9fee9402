#!/usr/bin/env python3
"""Reads a docker-archive tar (`podman|docker image save`) without an engine.

  inspect_archive.py ARCHIVE --extract-dir DIR
      prints one JSON object: every non-directory path across all layers
      (with size, mode, uid:gid), the uncompressed size of the layers, and
      writes each regular file under DIR for further checks (sha256, certs).
"""

import argparse
import gzip
import io
import json
import os
import sys
import tarfile


def open_layer(blob):
    if blob[:2] == b"\x1f\x8b":
        blob = gzip.decompress(blob)
    return blob, tarfile.open(fileobj=io.BytesIO(blob))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("archive")
    p.add_argument("--extract-dir", required=True)
    args = p.parse_args()

    files = {}
    layers_bytes = 0
    with tarfile.open(args.archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        if len(manifest) != 1:
            sys.exit(f"inspect: {len(manifest)} images in {args.archive}, want 1")
        for layer_name in manifest[0]["Layers"]:
            blob, layer = open_layer(outer.extractfile(layer_name).read())
            layers_bytes += len(blob)
            for m in layer.getmembers():
                name = m.name.lstrip("./")
                if m.isdir():
                    continue
                if os.path.basename(name).startswith(".wh."):
                    sys.exit(f"inspect: whiteout {name}: the image has deleted files in its layers")
                files[name] = {
                    "type": "file" if m.isfile() else "link" if (m.issym() or m.islnk()) else "other",
                    "size": m.size,
                    "mode": oct(m.mode & 0o7777),
                    "owner": f"{m.uid}:{m.gid}",
                }
                if m.isfile():
                    dest = os.path.join(args.extract_dir, name)
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    with open(dest, "wb") as f:
                        f.write(layer.extractfile(m).read())
    print(json.dumps({"files": files, "layers_uncompressed_bytes": layers_bytes}, sort_keys=True))


if __name__ == "__main__":
    main()
