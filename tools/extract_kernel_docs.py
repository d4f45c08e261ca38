"""The bundled model's training text: the Linux kernel's English documentation (reStructuredText) from Debian's
`linux-doc-6.12` package (GPL-2.0, see the package's copyright file), one document per source file, split
deterministically into train / val / test by a hash of each file's path.

    $ python tools/extract_kernel_docs.py --out build/kdoc            # apt-get download + dpkg-deb -x + extract
    $ python tools/extract_kernel_docs.py --deb linux-doc-6.12_*.deb --out build/kdoc

Writes build/kdoc/{train,val,test}/NNNNN.txt (one file per document) and build/kdoc/manifest.json (package
version, licence, file counts, bytes). The same package version gives the same files, byte for byte.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

PACKAGE = "linux-doc-6.12"
DOC_ROOT = f"usr/share/doc/{PACKAGE}/Documentation"
EXCLUDED = ("translations/",)  # Chinese, Japanese, Korean, Italian, Spanish: the model is English
# ~1% of documents each for validation and test; chosen by path hash so they never move between versions
SPLIT_OF_BUCKET = {0: "test", 1: "val"}


def split_of(relative_path: str) -> str:
    bucket = int(hashlib.sha256(relative_path.encode()).hexdigest(), 16) % 100
    return SPLIT_OF_BUCKET.get(bucket, "train")


def clean(text: str) -> str:
    """Drop the SPDX licence-tag lines (the same line atop most files teaches nothing) and trailing spaces."""
    lines = [line.rstrip() for line in text.splitlines() if "SPDX-License-Identifier" not in line]
    return "\n".join(lines).strip() + "\n"


def download(workdir: str) -> str:
    if subprocess.run(["apt-get", "download", PACKAGE], cwd=workdir).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)  # a fresh machine has no package lists yet
        subprocess.run(["apt-get", "download", PACKAGE], cwd=workdir, check=True)
    return sorted(glob.glob(os.path.join(workdir, f"{PACKAGE}_*.deb")))[-1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--deb", default=None, help="an already downloaded linux-doc-6.12 .deb")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        deb = args.deb or download(work)
        version = subprocess.run(["dpkg-deb", "-f", deb, "Version"], check=True, capture_output=True,
                                 text=True).stdout.strip()
        subprocess.run(["dpkg-deb", "-x", deb, os.path.join(work, "root")], check=True)
        root = os.path.join(work, "root", DOC_ROOT)
        sources = sorted(os.path.relpath(path, root) for path in glob.glob(os.path.join(root, "**", "*.rst.gz"),
                                                                          recursive=True))
        if os.path.isdir(args.out):
            shutil.rmtree(args.out)
        counts = {"train": 0, "val": 0, "test": 0}
        sizes = dict.fromkeys(counts, 0)
        for rel in sources:
            if rel.startswith(EXCLUDED):
                continue
            with gzip.open(os.path.join(root, rel), "rt", encoding="utf-8", errors="replace") as f:
                text = clean(f.read())
            if len(text) < 200:  # index stubs and include-only files
                continue
            split = split_of(rel)
            folder = os.path.join(args.out, split)
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"{counts[split]:05d}.txt"), "w", encoding="utf-8") as f:
                f.write(text)
            counts[split] += 1
            sizes[split] += len(text.encode())
        shutil.copy(os.path.join(work, "root", f"usr/share/doc/{PACKAGE}/copyright"),
                    os.path.join(args.out, "COPYRIGHT"))
    manifest = {"package": PACKAGE, "version": version, "licence": "GPL-2.0 (Debian copyright file copied as "
                "COPYRIGHT)", "source": f"{DOC_ROOT}/**/*.rst.gz minus {', '.join(EXCLUDED)}",
                "documents": counts, "bytes": sizes}
    with open(os.path.join(args.out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    print(json.dumps(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
