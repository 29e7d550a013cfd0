"""The ``pretrain`` commands: each module a thin shell (arguments in, one-line errors out) over a library
module of ``pretrain``. ``python -m pretrain.NAME`` (the names users type) runs ``pretrain.cli.NAME``."""
