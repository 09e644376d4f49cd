"""Run once in the embedded interpreter right after it starts (runtime.go
embeds this file and runs it as the module _slither_startup). It must stay
cheap: it imports nothing heavy itself.

multiprocessing's default start method on Linux (3.13) is 'fork', which
here would fork the Go process: only the forking thread survives in the
child, without the Go runtime. So the default becomes 'spawn', which starts
sys.executable (the real interpreter). It is set when multiprocessing.context
is first imported, not now: importing multiprocessing costs tens of
milliseconds. An explicit multiprocessing.set_start_method(...) or
get_context(...) still chooses freely.
"""

import sys

_MODULE = "multiprocessing.context"


def _prefer_spawn(module):
    default = getattr(module, "_default_context", None)
    spawn = getattr(module, "_concrete_contexts", {}).get("spawn")
    if default is not None and spawn is not None and getattr(default, "_actual_context", None) is None:
        default._default_context = spawn


class _SpawnLoader:
    """Wraps the loader of multiprocessing.context: runs it, then sets the default."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # get_source, is_package, ... as the real loader
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _prefer_spawn(module)


class _SpawnByDefault:
    """A meta path finder that finds nothing itself: for multiprocessing.context
    it asks the finders after it and wraps the loader they return."""

    def find_spec(self, name, path=None, target=None):
        if name != _MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and not isinstance(spec.loader, _SpawnLoader):
                    spec.loader = _SpawnLoader(spec.loader)
                return spec
        return None


if _MODULE in sys.modules:
    _prefer_spawn(sys.modules[_MODULE])
else:
    sys.meta_path.insert(0, _SpawnByDefault())
