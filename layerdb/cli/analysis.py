"""Commands of this module are registered on the main group by register()."""


def register(main) -> None:
    pass
