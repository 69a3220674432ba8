"""teacopy's core: everything the Lambdas run, imported as ``lambdas.…`` by the Lambdas, the CDK app, the CLI,
the local engine, the bench and the tests alike (docs/architecture.md maps its subpackages)."""
