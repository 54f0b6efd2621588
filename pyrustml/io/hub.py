"""Where a checkpoint comes from: a local directory, or a hub repo id through huggingface_hub
(its cache, HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE=1, revisions and progress bars)."""

from __future__ import annotations

import os

from ..errors import ModelNotFoundError

# Only what pyrustml reads: never the .bin/.h5/.msgpack/.onnx copies a repo may also carry.
ALLOW_PATTERNS = [
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
]


def resolve(source: str, revision: str | None = None) -> str:
    """A local directory holding the checkpoint (`~` expanded), or the hub's snapshot of a repo.
    Every failure, the cache's own included (HF_HUB_CACHE under a regular file, a read-only
    cache), is a ModelNotFoundError."""
    source = os.path.expanduser(source)
    if os.path.isdir(source):
        return source
    if os.path.isfile(source):
        if source.endswith(".gguf"):
            raise ModelNotFoundError(
                f"{source}: GGUF files are not supported yet; pass a safetensors checkpoint"
            )
        raise ModelNotFoundError(f"{source} is a file: pass the directory that holds the checkpoint")
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise ModelNotFoundError(f"{source}: no such directory")
    # Imported here: huggingface_hub takes ~0.2 s to import and local loads never need it.
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return str(snapshot_download(source, revision=revision, allow_patterns=ALLOW_PATTERNS))
    except GatedRepoError:
        raise ModelNotFoundError(
            f"{source} is gated: accept its license on the hub and log in (huggingface-cli login)"
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(f"{source}: no such repository on the hub (or it is private)") from None
    except RevisionNotFoundError:
        raise ModelNotFoundError(f"{source}: no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        cached = _cached_revisions(source)
        if cached:
            raise ModelNotFoundError(
                f"{source}: revision {revision or 'main'!r} is not in the local cache (cached: "
                f"{', '.join(cached[:5])}) and the hub cannot be reached (offline, or HF_HUB_OFFLINE=1)"
            ) from None
        raise ModelNotFoundError(
            f"{source} is not in the local cache and the hub cannot be reached "
            "(offline, or HF_HUB_OFFLINE=1); download it once with network access"
        ) from None
    except HfHubHTTPError as exc:
        raise ModelNotFoundError(f"{source}: hub request failed ({exc})") from None
    except ValueError as exc:  # malformed repo ids
        raise ModelNotFoundError(f"{source}: {exc}") from None
    except OSError as exc:  # the cache itself: not a directory, not writable, disk full
        where = exc.filename or os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "the hub cache"
        raise ModelNotFoundError(
            f"{source}: the Hugging Face cache cannot be used ({exc.strerror or exc} at {where})"
        ) from None


def _cached_revisions(repo_id: str) -> list[str]:
    """The refs (branches, tags) and snapshot commits the local hub cache holds for a model repo,
    so a missing revision of a cached repo is told apart from a repo never downloaded."""
    from huggingface_hub import constants

    repo = os.path.join(constants.HF_HUB_CACHE, "models--" + repo_id.replace("/", "--"))
    found: list[str] = []
    for sub in ("refs", "snapshots"):
        try:
            found += sorted(os.listdir(os.path.join(repo, sub)))
        except OSError:
            continue
    return found
