"""Registers dcvq's config schemas with Hydra wherever Hydra builds a config search path.

The config groups in ``conf/`` pull their validation schemas from Hydra's ConfigStore
(``- /schema/<group>/<name>@_here_``). ``train.py``, ``python -m dcvq.evaluate`` and
``dcvq.config.compose`` store them first; with Hydra's own API
(``initialize_config_dir(conf)`` + ``compose``) nobody would, and composing would fail with
"Could not load 'schema/...'". Hydra imports every module of the ``hydra_plugins``
namespace package during plugin discovery and calls each search-path plugin before any
config is loaded: this one stores the schemas then. ``hydra_plugins`` is a namespace
package shared with other distributions: no ``hydra_plugins/__init__.py``.
"""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class DcvqSchemas(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        # imported here: the plugin scan runs in every Hydra app of this environment
        from dcvq.config.store import register

        register()  # idempotent; the search path itself is left as it is
