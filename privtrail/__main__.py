from privtrail.cli import app

app(prog_name="privtrail")
