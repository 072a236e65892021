from deepfer.cli import app

app(prog_name="deepfer")
