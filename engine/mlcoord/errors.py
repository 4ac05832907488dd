"""The errors mlcoord raises on purpose. Each message names what was wrong and how to fix it;
the CLI prints them without a traceback."""


class MlcoordError(Exception):
    """Base class: an error the user can act on."""


class ConfigError(MlcoordError, ValueError):
    """Bad configuration: the message names the key path, the value and what was expected."""


class PluginError(MlcoordError):
    """A plugin or component broke the hook contract."""


class DataError(MlcoordError, ValueError):
    """Market data that cannot be traded on."""


class StoreError(MlcoordError):
    """The live store cannot be opened or cannot do what was asked; the message names the store."""


class StoreLocked(StoreError):
    """Another bot holds the store (one bot per store, or the two step on each other's orders)."""


class StoreFailure(StoreError):
    """The store failed while in use (disk full, file removed or damaged, database down): no
    order may go out unjournaled, so the bot stops; the message names the store and the OS or
    database error."""
