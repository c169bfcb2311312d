# pytest puts tests/ first on sys.path, so "cors" here is this folder: let cors.* submodules resolve
# to the project's cors package of this checkout (not to whichever copy happens to be installed).
from pathlib import Path as _Path

__path__.append(str(_Path(__file__).resolve().parents[2] / "cors"))
