import aiodatabases


def test_exported_names_are_exactly_all() -> None:
    public = {name for name in vars(aiodatabases) if not name.startswith("_")}
    modules = {"backends", "connection", "database", "exceptions", "testing", "transaction"}
    assert public - modules == set(aiodatabases.__all__)
    assert aiodatabases.__all__ == sorted(aiodatabases.__all__)


def test_package_is_typed() -> None:
    from importlib.resources import files

    assert files("aiodatabases").joinpath("py.typed").is_file()
