"""Which installed packages a ``.keras`` config needs, read from its JSON alone.

Some Keras models (keras_hub backbones: BERT, GPT-2, ViT, ...) save only their constructor
arguments; their layer graph is built by the package's Python code, so no config parser can
convert them. :mod:`modelconv.importers.keras.package_route` loads them with Keras itself,
which imports the modules the config names. Before anything is imported, this module
audits the whole config: every ``module`` / ``registered_name`` must belong to Keras or to
an installed package on the caller's allowlist, and no Lambda appears anywhere.

Nothing here imports Keras, TensorFlow or a package the file names
(:func:`importlib.util.find_spec` of a top-level name only locates it).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from modelconv.errors import MissingDependencyError, UnsafeModelError

#: module roots that are Keras itself (always allowed)
KERAS_ROOTS = frozenset({"keras"})
#: module roots that are never a package's code (the file's own script, builtins)
NEVER_PACKAGES = frozenset({"__main__", "builtins", "__builtin__", ""})
#: serialized objects that carry Python code
CODE_CLASSES = frozenset({"Lambda", "TFLambda", "__lambda__"})
#: the packages allowed when the caller names none (opt-in: see docs/security.md)
DEFAULT_ALLOWED_PACKAGES: tuple[str, ...] = ()


@dataclass(frozen=True)
class PackageObject:
    """One serialized object of the config that names a package other than Keras."""

    class_name: str
    module: str
    registered_name: str
    package: str
    where: str

    def describe(self) -> str:
        """``'BertBackbone' (keras_hub.src.models.bert.bert_backbone)``."""
        return f"'{self.class_name}' ({self.module or self.registered_name})"


def _objects(x: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(x, dict):
        if "class_name" in x:
            yield where, x
        for key, value in x.items():
            yield from _objects(value, f"{where}/{key}" if where else str(key))
    elif isinstance(x, list):
        for i, value in enumerate(x):
            yield from _objects(value, f"{where}/{i}")


def _packages_of(obj: dict[str, Any]) -> list[str]:
    """Top-level package names an object's ``module`` and ``registered_name`` point into."""
    found: list[str] = []
    module = obj.get("module")
    if isinstance(module, str) and module:
        found.append(module.split(".")[0])
    registered = obj.get("registered_name")
    if isinstance(registered, str) and ">" in registered:
        found.append(registered.split(">")[0])
    return found


def package_objects(config: dict[str, Any]) -> list[PackageObject]:
    """Every serialized object of ``config`` whose module or registered name is not Keras.

    Args:
        config: the parsed ``config.json`` of a ``.keras`` archive.

    Returns:
        The objects, one entry per (object, foreign package), in config order.
    """
    out: list[PackageObject] = []
    for where, obj in _objects(config, ""):
        for pkg in dict.fromkeys(_packages_of(obj)):
            if pkg in KERAS_ROOTS:
                continue
            out.append(PackageObject(str(obj.get("class_name")), str(obj.get("module") or ""),
                                     str(obj.get("registered_name") or ""), pkg,
                                     where or "top level"))
    return out


def code_objects(config: dict[str, Any]) -> list[str]:
    """Where ``config`` serializes Python code (Lambda layers, lambda functions)."""
    return [f"{obj.get('class_name')} ({where or 'top level'})"
            for where, obj in _objects(config, "") if obj.get("class_name") in CODE_CLASSES]


def installed(package: str) -> bool:
    """Whether a top-level package can be imported here (located, not imported)."""
    if package in NEVER_PACKAGES or not package.isidentifier():
        return False
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def needs_package_route(config: dict[str, Any]) -> bool:
    """Whether a ``.keras`` config is a model whose graph lives in an installed package.

    True when the top-level object itself belongs to another package (a keras_hub backbone),
    or when every non-Keras object of the config names an installed package (a functional
    model using keras_hub layers). A custom class of the user's own script is not: the
    config route refuses it as custom code.
    """
    objects = package_objects(config)
    if not objects:
        return False
    top_level = any(_packages_of(config)) and any(
        p not in KERAS_ROOTS for p in _packages_of(config))
    return top_level or all(installed(o.package) for o in objects)


def check_packages(config: dict[str, Any], allowed: Sequence[str], path: str) -> list[str]:
    """Refuse a config that would make Keras run code not on the allowlist.

    Args:
        config: the parsed ``config.json``.
        allowed: the packages the caller allows (``--allow-package``).
        path: the file, for messages.

    Returns:
        The packages (sorted) that loading the file imports besides Keras.

    Raises:
        UnsafeModelError: Lambda/code objects, a class of the saving script (``__main__``),
            or a package not on the allowlist (the message names each class, its package
            and the flag).
        MissingDependencyError: an allowed package is not installed.
    """
    code = code_objects(config)
    if code:
        raise UnsafeModelError(
            f"model contains Python code that modelconv will not run: {', '.join(code)}",
            path=path, hint="Replace Lambda layers with built-in Keras layers and re-save")
    objects = package_objects(config)
    never = [o for o in objects if o.package in NEVER_PACKAGES]
    if never:
        listed = "; ".join(f"{o.describe()} at {o.where}" for o in never[:8])
        raise UnsafeModelError(
            f"model contains custom classes of the script that saved it: {listed}",
            path=path, hint="Replace the custom classes with built-in Keras layers and re-save")
    allow = set(allowed)
    refused = [o for o in objects if o.package not in allow]
    if refused:
        first = refused[0]
        pkgs = sorted({o.package for o in refused})
        flags = " ".join(f"--allow-package {p}" for p in pkgs)
        listed = "; ".join(
            f"{o.describe()} of package '{o.package}'"
            + ("" if installed(o.package) else " (not installed here)") for o in refused[:8])
        raise UnsafeModelError(
            f"this .keras file holds a {first.class_name} of package '{first.package}', not "
            f"a Keras layer graph: it stores constructor arguments and its layers are built "
            f"by that package's Python code ({listed}); modelconv runs an installed "
            f"package's code only when you allow the package",
            path=path, hint=f"Pass {flags} (allow_packages={pkgs!r} in the API) if you trust "
            "the installed package; code from the file itself is never run")
    packages = sorted({o.package for o in objects})
    for pkg in packages:
        if not installed(pkg):
            raise MissingDependencyError(pkg.replace("_", "-"), "models",
                                         f"Loading a model of package '{pkg}'")
    return packages
