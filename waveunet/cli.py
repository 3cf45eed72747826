"""The ``waveunet`` command: a thin click shell over the Python API.

Each sub-command lives in ``waveunet/commands/<name>.py`` and is imported only when it runs, so
``waveunet --help`` stays fast and one broken command cannot take the others down.

How a command ends (the README's "Bad input" section lists each case):

- errors the user can fix (:class:`waveunet.errors.WaveUNetError`): one ``Error: ...`` line, exit code 1;
- Ctrl-C (SIGINT) and SIGTERM: the command unwinds where it is, deleting what it had not finished
  (SIGTERM is raised as :class:`Terminated`, a ``KeyboardInterrupt``, so both take the same way
  out), says so in one ``Interrupted by SIGINT: ...`` line, and exits with 128 + the signal's
  number: 130 or 143, as a shell reports a process the signal killed. ``train`` instead stops
  after the step it is in and saves (see :mod:`waveunet.train.trainer`).
"""

from __future__ import annotations

import importlib
import signal
import threading
from contextlib import contextmanager

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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds (and cleans up) as Ctrl-C does."""


def exit_code(signal_name: str) -> int:
    """128 + the signal's number, as shells report a process a signal ended: SIGINT 130, SIGTERM 143."""
    return 128 + signal.Signals[signal_name].value


def _terminate(signum, frame):
    raise Terminated()


@contextmanager
def sigterm_as_interrupt():
    """Within: SIGTERM raises :class:`Terminated` (in the main thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
            with sigterm_as_interrupt():
                return super().invoke(ctx)
        except WaveUNetError as error:
            raise click.ClickException(str(error)) from None
        except KeyboardInterrupt as interrupt:
            name = "SIGTERM" if isinstance(interrupt, Terminated) else "SIGINT"
            click.echo(f"Interrupted by {name}: {interrupt or 'stopped before it finished'}", err=True)
            ctx.exit(exit_code(name))


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="waveunet")
def main():
    """Wave-U-Net source separation and U-Net segmentation."""
