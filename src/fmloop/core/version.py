"""The fmloop version, recorded in every manifest and registered model version."""

__version__ = "0.1.0"
