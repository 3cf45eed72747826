"""The ``waveunet`` command: a thin click shell over the Python API.

Each sub-command lives in ``waveunet/commands/<name>.py`` and is imported only when it runs, so
``waveunet --help`` stays fast and one broken command cannot take the others down. Errors the user
can fix (:class:`waveunet.errors.WaveUNetError`) become one ``Error: ...`` line and exit code 1.
"""

from __future__ import annotations

import importlib

import click

from .errors import WaveUNetError

#: sub-command name -> "module:attribute" of its click command
COMMANDS = {
    "info": "waveunet.commands.info:info",
    "import-checkpoint": "waveunet.commands.import_checkpoint:import_checkpoint",
    "separate": "waveunet.commands.separate:separate",
    "train": "waveunet.commands.train:train",
    "evaluate": "waveunet.commands.evaluate:evaluate",
    "export": "waveunet.commands.export:export",
    "image": "waveunet.commands.image:image",
}


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx, name):
        if name in self.lazy_commands:
            module, attr = self.lazy_commands[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except WaveUNetError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="waveunet")
def main():
    """Wave-U-Net source separation and U-Net segmentation."""
