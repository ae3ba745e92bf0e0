"""``make eval-data``: BIG-bench's task JSONs from the ``bigbench`` 1.0.0 source archive on
PyPI (Apache-2.0), and BIG-Bench Hard's (MIT) from its repository at a pinned commit, each
checked by SHA-256; only the tasks we use are written into ``data/``.

    python -m voice_agent.eval.fetch [--out data] [--archive FILE] [--bbh DIR]

``pip download --no-deps bigbench==1.0.0`` is tried first. That sdist declares a direct
URL dependency (bleurt), which current pip refuses while preparing its metadata, after
the archive was fetched; the same file is then fetched from the URL that the package
index lists. Either way nothing is trusted before its hash matches. Stdlib only: it runs
before the package's dependencies matter.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

PACKAGE = "bigbench==1.0.0"
ARCHIVE = "bigbench-1.0.0.tar.gz"
# Observed on 2026-12-02 from pypi.org (the index lists the same digest in its link).
SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
INDEX = "https://pypi.org/simple/bigbench/"
TASKS = ("object_counting", "navigate", "date_understanding",
         "tracking_shuffled_objects/three_objects", "tracking_shuffled_objects/five_objects",
         "tracking_shuffled_objects/seven_objects")


# BIG-Bench Hard (Suzgun et al. 2022): 250 examples of each task, drawn from BIG-bench's.
# The files as they are at this commit of github.com/suzgunmirac/BIG-Bench-Hard (MIT),
# hashed on 2026-12-06; a second source since PyPI stopped listing the archive above.
BBH_COMMIT = "9ee07bd481feebf959a6b59d61ea57bdcf30964d"
BBH_URL = f"https://raw.githubusercontent.com/suzgunmirac/BIG-Bench-Hard/{BBH_COMMIT}/bbh/"
BBH_TASKS = {
    "object_counting.json": "8acef14dbbdd40d2326ef7755750b6b5fe919fef06276af1bab3f1c297f022ff",
    "navigate.json": "b7944dfd3c81da5c4815bd75b00d6fa3c64140823498e78ed496f4c3d36f7f0d",
}


class FetchError(Exception):
    """One line for the user; the command exits 2."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(dest: Path) -> Path:
    """The archive into ``dest``: pip first, the index's own link if pip gives up."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / ARCHIVE
    if target.exists():
        return target
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest),
                    PACKAGE], capture_output=True, text=True)
    if target.exists():
        return target
    try:
        page = urllib.request.urlopen(INDEX, timeout=60).read().decode()
        links = re.findall(r'href="([^"]+)"', page)
        url = next((u for u in links if ARCHIVE in u), None)
        if url is None:
            # Seen on 2026-12-05: the index listed only bigbench-0.0.1.tar.gz.
            listed = ", ".join(u.split("#")[0].rsplit("/", 1)[-1] for u in links) or "nothing"
            raise FetchError(f"the package index no longer lists {ARCHIVE} (it lists: {listed}); "
                             "run `make eval-data ARCHIVE=FILE` with a copy of it "
                             f"(SHA-256 {SHA256})")
        part = target.with_suffix(".partial")
        with urllib.request.urlopen(url.split("#")[0], timeout=600) as r, open(part, "wb") as f:
            shutil.copyfileobj(r, f)
        part.rename(target)
    except OSError as e:
        raise FetchError(f"cannot download {PACKAGE} ({type(e).__name__}: {e})") from None
    return target


def extract(archive: Path, out: Path, expected: str = SHA256) -> list[Path]:
    """Check the hash, then write only the task JSONs under ``out/bigbench/<task>/``."""
    got = sha256(archive)
    if got != expected:
        raise FetchError(f"{archive}: SHA-256 {got} does not match the pinned {expected}; "
                         "refusing to use it (delete it and run `make eval-data` again)")
    written = []
    prefix = "bigbench-1.0.0/bigbench/benchmark_tasks/"
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for task in TASKS:
                member = tar.getmember(f"{prefix}{task}/task.json")
                path = out / "bigbench" / task / "task.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                written.append(path)
    except (tarfile.TarError, KeyError, OSError) as e:
        raise FetchError(f"{archive}: cannot extract the tasks ({e})") from None
    return written


def fetch_bbh(out: Path, local: Path | None = None) -> list[Path]:
    """BIG-Bench Hard's task files into ``out/bbh/``: downloaded at the pinned commit, or
    copied from ``local`` (a folder holding them); nothing is kept unless its hash matches."""
    written = []
    for name, expected in BBH_TASKS.items():
        path = out / "bbh" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(".partial")
        try:
            if local is not None:
                shutil.copyfile(local / name, part)
            else:
                with urllib.request.urlopen(BBH_URL + name, timeout=120) as r, open(part, "wb") as f:
                    shutil.copyfileobj(r, f)
        except OSError as e:
            part.unlink(missing_ok=True)
            where = local / name if local is not None else BBH_URL + name
            raise FetchError(f"cannot get BIG-Bench Hard's {name} from {where} "
                             f"({type(e).__name__}: {e}); run `make eval-data BBH=DIR` with a "
                             f"copy of its bbh/ folder at commit {BBH_COMMIT[:12]}") from None
        got = sha256(part)
        if got != expected:
            part.unlink()
            raise FetchError(f"BIG-Bench Hard's {name}: SHA-256 {got} does not match the pinned "
                             f"{expected} (commit {BBH_COMMIT[:12]}); refusing to use it")
        part.rename(path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="data", help="where the tasks go (default: data)")
    ap.add_argument("--archive", help="use this archive instead of downloading (hash still checked)")
    ap.add_argument("--bbh", help="a folder with BIG-Bench Hard's task files (hashes still checked)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    def bigbench() -> list[Path]:
        archive = Path(args.archive) if args.archive else download(out / ".download")
        if not archive.exists():
            raise FetchError(f"{archive}: no such file")
        return extract(archive, out)

    code = 0
    # Two independent sources: one that cannot be had does not keep the other away.
    for source in (bigbench, lambda: fetch_bbh(out, Path(args.bbh) if args.bbh else None)):
        try:
            for path in source():
                print(f"wrote {path}")
        except FetchError as e:
            print(f"error: {e}", file=sys.stderr)
            code = 2
    return code


if __name__ == "__main__":
    sys.exit(main())
