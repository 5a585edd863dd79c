"""Reading results: figures and tables from run folders."""
