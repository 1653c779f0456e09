import sys
from pathlib import Path

# The shared fakes of the ports are imported by name from this folder (a name no other service uses).
sys.path.insert(0, str(Path(__file__).parent))
