"""``embed``: every image of a folder as the pooled features a trained model's classifier reads, into one ``.npz``
file (:mod:`lightning_resnet.inference.similarity`) that ``similar`` and ``serve --embeddings`` search, and that
numpy loads in two lines."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import Namespace

from ..data import scan_unlabelled
from ..errors import check
from ..hints import python_command, shown
from ..inference.similarity import Embeddings, embeddings_file
from .options import CommandParser

COMMAND = "embed"


def parse(args: list[str]) -> Namespace:
    parser = CommandParser(COMMAND)
    parser.add_argument("--model", type=Path, required=True,
                        help="a checkpoint of fit (.ckpt), or an exported .onnx or .xml with its .json beside it")
    parser.add_argument("--input", type=Path, required=True, help="an image file or a folder of images (recursively)")
    parser.add_argument("--output", type=Path | None, default=None,
                        help="the .npz to write (default: <model file>.embeddings.npz beside the model)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_workers", type=int, default=0, help="loader processes that read the images")
    return parser.parse_args(args)


def embed(args: list[str]) -> Path:
    """Write the features of every readable image of ``--input``; returns the file written."""
    from ..runtimes import open_predictor, predict_images

    options = parse(args)
    check(options.batch_size >= 1, f"--batch_size must be at least 1, got {options.batch_size}")
    check(options.num_workers >= 0, f"--num_workers must be 0 or more, got {options.num_workers}")
    output = options.output or embeddings_file(options.model)
    check(output.suffix == ".npz", f"--output {output}: embed writes numpy's .npz, which programs tell by its suffix: "
                                   f"name it {output.with_suffix('.npz').name}")
    paths = scan_unlabelled(options.input.expanduser(), "--input")
    model = open_predictor(options.model)
    seen = predict_images(model, paths, options.batch_size, options.num_workers, features=True)
    check(seen.features is not None, f"--input {options.input}: none of its {len(paths)} images could be read")
    if output.exists():
        print(f"replacing {shown(output)}")
    Embeddings(tuple(map(str, seen.keys)), seen.features.numpy(), str(options.model.expanduser().resolve()),
               tuple(map(str, seen.unreadable))).save(output)
    unread = f"; {len(seen.unreadable)} unreadable, listed in it" if seen.unreadable else ""
    print(f"wrote {shown(output)}: {len(seen.keys)} images x {seen.features.shape[1]} features{unread}. Search it: "
          f"{python_command('similar', '--embeddings', shown(output), '--image', '<image or folder>')}; "
          f"load it: saved = numpy.load('{output}'); saved['features'], saved['paths']")
    return output
