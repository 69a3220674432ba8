"""Code shared by every teacopy Lambda: models, errors, adapters and the copy logic.

Inside a Lambda the asset root is ``lambdas/``, so this package is imported as ``shared``.
Modules here use relative imports only, so the CDK app can import ``lambdas.shared.env_names``.
"""
