"""The report: figures drawn from run directories, written as report/index.html and report/index.md."""
