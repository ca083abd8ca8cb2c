"""kombu's filesystem transport, made safe for concurrent publishers and consumers.

Stock kombu (5.7; issue #1551) creates a message file under its final name and then writes
into it, and consumers take any file with that name without waiting for the writer's lock:
a consumer that lists the folder in between reads half a message, and json.loads raises in
the worker's event loop ("Unrecoverable error: JSONDecodeError"), which stops the worker.
Here a message file is complete from the moment it has its name (written under another
name, then renamed), and a consumer that still meets a file it cannot decode (left by a
stock publisher, a full disk or a hand) sets it aside with one warning instead of dying.

File names, their order and the queue matching stay kombu's, so either version reads what
the other wrote. The settings select this transport only for the embedded broker.
"""

import logging
import os
import shutil
import uuid
from queue import Empty
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

# A consumer takes a file only if its name ends in ".<queue>.msg"; these suffixes never do,
# so no consumer, size or purge sees a file in any of these states.
WRITING = ".writing"
CLAIMED = ".claimed"
CORRUPT = ".corrupt"  # kept beside the queue for an operator to look at


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        path = os.path.join(self.data_folder_out, name)
        data = dumps(payload).encode()
        try:
            with open(path + WRITING, "wb") as f:
                f.write(data)
            # A rename within one directory is atomic: readers see no file or all of it.
            os.replace(path + WRITING, path)
        except OSError as exc:
            _remove_quietly(path + WRITING)
            raise ChannelError(f"Cannot add file {path!r} to directory") from exc

    def _get(self, queue):
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            path = os.path.join(self.data_folder_in, name)
            # Claim by renaming in place: of consumers racing for a file exactly one rename
            # succeeds. (kombu moves it to the temp directory, which is a copy, and a race
            # between the copies, when that directory is on another filesystem.)
            try:
                os.rename(path, path + CLAIMED)
            except OSError:
                continue
            try:
                with open(path + CLAIMED, "rb") as f:
                    data = f.read()
            except OSError as exc:
                raise ChannelError(f"Cannot read file {path!r} from queue.") from exc
            try:
                message = _decode(data)
            except ValueError as exc:
                # Out of every consumer's sight already, so this warns once per file.
                os.replace(path + CLAIMED, path + CORRUPT)
                logger.warning("Broker file %s is not a message (%s, %d bytes); set aside as %s",
                               name, exc, len(data), name + CORRUPT)
                continue
            self._done_with(path + CLAIMED, name)
            return message
        raise Empty()

    def _done_with(self, claimed, name):
        if self.store_processed:
            shutil.move(claimed, os.path.join(self.processed_folder, name))
        else:
            os.remove(claimed)


class Transport(filesystem.Transport):
    Channel = Channel


def _decode(data):
    message = loads(data)  # strict UTF-8, then JSON: both raise ValueError
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    return message


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass
