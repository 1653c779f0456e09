import sys
from pathlib import Path

# The test kit (builders, in-memory store, reference) is imported by name from this folder.
sys.path.insert(0, str(Path(__file__).parent))
