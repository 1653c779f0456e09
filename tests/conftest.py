pytest_plugins = ["advocacy_common.testing"]
